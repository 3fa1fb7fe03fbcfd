"""The ``bucket`` mode: the way OpenAI enforces a per-minute limit at sub-minute granularity.

Requests and tokens are continuous buckets refilled at ``limit / window_s`` per second that hold
at most ``burst_s`` seconds of refill, so an idle key may send about one second's worth at once
and then no faster than the refill rate. Headers: ``x-ratelimit-remaining-*`` is what the bucket
holds now, ``x-ratelimit-reset-*`` the time until it is full again (``20ms``, ``1s``, ``6m0s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llm_assets.simulator.limits.window import Decision, KeyWindow, format_duration


@dataclass
class KeyBucket:
    """The request and token buckets of one API key, plus counters for the stats."""

    requests: float
    tokens: float
    updated_at: float
    seen: KeyWindow = field(default_factory=KeyWindow)
    """Admissions of the last ``window_s`` seconds, only to report the peaks in the stats."""

    @property
    def admitted(self) -> int:
        """Requests admitted so far."""
        return self.seen.admitted

    @property
    def rate_limited(self) -> int:
        """Requests rejected so far."""
        return self.seen.rate_limited

    @property
    def max_requests_in_window(self) -> int:
        """The most requests admitted in any ``window_s``."""
        return self.seen.max_requests_in_window

    @property
    def max_tokens_in_window(self) -> int:
        """The most tokens admitted in any ``window_s``."""
        return self.seen.max_tokens_in_window


@dataclass(frozen=True)
class BucketShape:
    """Refill rate and capacity of one dimension (requests or tokens); rate 0 = unlimited."""

    rate: float
    capacity: float

    @classmethod
    def of(cls, limit: int, window_s: float, burst_s: float) -> BucketShape:
        """``limit`` per ``window_s``, holding ``burst_s`` of refill (at least one unit)."""
        rate = limit / window_s
        return cls(rate, max(1.0, rate * burst_s) if limit else 0.0)

    def wait(self, level: float, need: float) -> float:
        """Seconds until the bucket holds ``need``."""
        return max(0.0, (need - level) / self.rate) if self.rate else 0.0


class BucketLimiter:
    """Continuous token buckets for requests and tokens, one pair per API key.

    A request needs one unit of the request bucket and, of the token bucket, its cost or the
    whole capacity if it costs more (a large request is admitted from a full bucket and leaves
    a debt that the refill pays back, so the rate holds). Same threading rules as
    ``RateLimiter``.

    Examples:
        >>> limiter = BucketLimiter()
        >>> limits = {"rpm": 600, "tpm": 0, "window_s": 60.0, "burst_s": 1.0}
        >>> [limiter.admit("k", 0, 0.0, **limits).admitted for _ in range(11)].count(True)
        10
        >>> decision = limiter.admit("k", 0, 0.05, **limits)
        >>> decision.admitted, decision.retry_after_s
        (False, 0.05)
        >>> limiter.admit("k", 0, 0.1, **limits).headers["x-ratelimit-reset-requests"]
        '1s'
    """

    def __init__(self) -> None:
        self.windows: dict[str, KeyBucket] = {}

    def reset(self) -> None:
        """Forget all buckets and counters."""
        self.windows.clear()

    def _bucket(self, key: str, now: float, shapes: tuple[BucketShape, BucketShape]) -> KeyBucket:
        bucket = self.windows.get(key)
        if bucket is None:
            bucket = self.windows[key] = KeyBucket(shapes[0].capacity, shapes[1].capacity, now)
        elapsed = max(0.0, now - bucket.updated_at)
        bucket.requests = min(shapes[0].capacity, bucket.requests + elapsed * shapes[0].rate)
        bucket.tokens = min(shapes[1].capacity, bucket.tokens + elapsed * shapes[1].rate)
        bucket.updated_at = max(bucket.updated_at, now)
        return bucket

    def admit(
        self,
        key: str,
        cost: int,
        now: float,
        *,
        rpm: int,
        tpm: int,
        window_s: float,
        burst_s: float,
    ) -> Decision:
        """Admit or reject one request of ``cost`` tokens for ``key`` at time ``now``.

        Args:
            key: The caller's API key.
            cost: Tokens charged at admission (prompt estimate + max_tokens).
            now: Monotonic time in seconds.
            rpm: Requests refilled per ``window_s``; 0 = unlimited.
            tpm: Tokens refilled per ``window_s``; 0 = unlimited.
            window_s: The period the limits are stated per (60 = per minute).
            burst_s: Seconds of refill each bucket holds.

        Returns:
            The decision, with rate-limit headers describing the buckets after it.
        """
        shapes = (BucketShape.of(rpm, window_s, burst_s), BucketShape.of(tpm, window_s, burst_s))
        bucket = self._bucket(key, now, shapes)
        bucket.seen.prune(now, window_s)
        token_need = min(cost, shapes[1].capacity)
        limited_by, retry_after = None, 0.0
        if rpm and bucket.requests < 1:
            limited_by, retry_after = "requests", shapes[0].wait(bucket.requests, 1)
        elif tpm and bucket.tokens < token_need:
            limited_by, retry_after = "tokens", shapes[1].wait(bucket.tokens, token_need)
        if limited_by is not None:
            bucket.seen.rate_limited += 1
            used = rpm if limited_by == "requests" else tpm
            return Decision(
                False, limited_by, retry_after, used, self._headers(bucket, shapes, rpm, tpm)
            )
        self._charge(bucket, cost, now, rpm=rpm, tpm=tpm)
        return Decision(True, headers=self._headers(bucket, shapes, rpm, tpm))

    def peek(
        self, key: str, now: float, *, rpm: int, tpm: int, window_s: float, burst_s: float
    ) -> Decision:
        """Describe ``key``'s buckets without admitting anything (for errors before admission).

        Args:
            key: The caller's API key.
            now: Monotonic time in seconds.
            rpm: Requests refilled per ``window_s``; 0 = unlimited.
            tpm: Tokens refilled per ``window_s``; 0 = unlimited.
            window_s: The period the limits are stated per.
            burst_s: Seconds of refill each bucket holds.

        Returns:
            A non-admitting decision carrying only headers.
        """
        shapes = (BucketShape.of(rpm, window_s, burst_s), BucketShape.of(tpm, window_s, burst_s))
        bucket = self._bucket(key, now, shapes)
        return Decision(False, headers=self._headers(bucket, shapes, rpm, tpm))

    @staticmethod
    def _charge(bucket: KeyBucket, cost: int, now: float, *, rpm: int, tpm: int) -> None:
        """Take one admission out of the buckets and count it."""
        if rpm:
            bucket.requests -= 1
        if tpm:
            bucket.tokens -= cost
        bucket.seen.record(now, cost)

    @staticmethod
    def _headers(
        bucket: KeyBucket, shapes: tuple[BucketShape, BucketShape], rpm: int, tpm: int
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, limit, level, shape in (
            ("requests", rpm, bucket.requests, shapes[0]),
            ("tokens", tpm, bucket.tokens, shapes[1]),
        ):
            if limit:
                headers[f"x-ratelimit-limit-{name}"] = str(limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(level)))
                headers[f"x-ratelimit-reset-{name}"] = format_duration(
                    shape.wait(level, shape.capacity)
                )
        return headers
