"""Per-key request and token limits with OpenAI-style rate-limit headers, in two modes.

``window`` (``RateLimiter``): a sliding window holds the admissions of the last ``window_s``
seconds, i.e. the half-open interval ``(now - window_s, now]``, and admits up to the limit in
it.

``bucket`` (``BucketLimiter``): the way OpenAI enforces a per-minute limit. Requests and tokens
are continuous buckets refilled at ``limit / window_s`` per second that hold at most
``burst_s`` seconds of refill, so an idle key may send about one second's worth at once and
then no faster than the refill rate. Headers: ``x-ratelimit-remaining-*`` is what the bucket
holds now, ``x-ratelimit-reset-*`` the time until it is full again (``20ms``, ``1s``,
``6m0s``).

In both modes rejected requests are not recorded, so a client that backs off as told by
``retry-after`` is admitted on its next try.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


def format_duration(seconds: float) -> str:
    """Format a duration like OpenAI's ``x-ratelimit-reset-*`` headers (``120ms``, ``6m0s``).

    Args:
        seconds: Non-negative duration.

    Returns:
        ``0s`` for nothing to wait, milliseconds below one second, else ``[Nh][Nm]N[.fff]s``.

    Examples:
        >>> format_duration(0.12), format_duration(1.0), format_duration(360.0)
        ('120ms', '1s', '6m0s')
    """
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{round(secs, 3):.3f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return text


@dataclass
class Decision:
    """Outcome of one admission attempt, with what the rate-limit headers need."""

    admitted: bool
    limited_by: str | None = None
    """``"requests"`` or ``"tokens"`` when rejected."""
    retry_after_s: float | None = None
    """Seconds until the request would fit; None when it can never fit."""
    used: int = 0
    """Requests or tokens (per ``limited_by``) already in the window when rejected."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class KeyWindow:
    """Admissions of one API key inside the sliding window, plus peak observations."""

    times: deque[float] = field(default_factory=deque)
    costs: deque[int] = field(default_factory=deque)
    tokens_in_window: int = 0
    admitted: int = 0
    rate_limited: int = 0
    max_requests_in_window: int = 0
    max_tokens_in_window: int = 0

    def prune(self, now: float, window_s: float) -> None:
        """Drop admissions that left the window ``(now - window_s, now]``."""
        horizon = now - window_s
        while self.times and self.times[0] <= horizon:
            self.times.popleft()
            self.tokens_in_window -= self.costs.popleft()

    def wait_for_requests(self, now: float, window_s: float, rpm: int) -> float:
        """Seconds until one more request fits under ``rpm``."""
        excess = len(self.times) - rpm
        if excess < 0:
            return 0.0
        return self.times[excess] + window_s - now

    def wait_for_tokens(self, now: float, window_s: float, tpm: int, cost: int) -> float | None:
        """Seconds until ``cost`` more tokens fit under ``tpm``; None if they never can."""
        if cost > tpm:
            return None
        to_free = self.tokens_in_window + cost - tpm
        if to_free <= 0:
            return 0.0
        for when, spent in zip(self.times, self.costs, strict=True):
            to_free -= spent
            if to_free <= 0:
                return when + window_s - now
        return window_s  # unreachable while tokens_in_window matches the deques


class RateLimiter:
    """Sliding-window RPM/TPM limits, one window per API key.

    Not thread-safe: the simulator calls it only from its event loop, and no ``await`` sits
    between checking and recording an admission.
    """

    def __init__(self) -> None:
        self.windows: dict[str, KeyWindow] = {}

    def reset(self) -> None:
        """Forget all windows and counters."""
        self.windows.clear()

    def admit(
        self, key: str, cost: int, now: float, *, rpm: int, tpm: int, window_s: float
    ) -> Decision:
        """Admit or reject one request of ``cost`` tokens for ``key`` at time ``now``.

        Args:
            key: The caller's API key.
            cost: Tokens charged at admission (prompt estimate + max_tokens).
            now: Monotonic time in seconds.
            rpm: Requests allowed per window; 0 = unlimited.
            tpm: Tokens allowed per window; 0 = unlimited.
            window_s: Window length in seconds.

        Returns:
            The decision, with rate-limit headers describing the window after it.
        """
        window = self.windows.setdefault(key, KeyWindow())
        window.prune(now, window_s)
        limited_by = None
        retry_after: float | None = 0.0
        if rpm and len(window.times) >= rpm:
            limited_by = "requests"
            retry_after = window.wait_for_requests(now, window_s, rpm)
        elif tpm:
            token_wait = window.wait_for_tokens(now, window_s, tpm, cost)
            if token_wait is None or token_wait > 0:
                limited_by, retry_after = "tokens", token_wait
        if limited_by is not None:
            window.rate_limited += 1
            used = len(window.times) if limited_by == "requests" else window.tokens_in_window
            headers = self._headers(window, now, cost, rpm=rpm, tpm=tpm, window_s=window_s)
            return Decision(False, limited_by, retry_after, used, headers)
        window.times.append(now)
        window.costs.append(cost)
        window.tokens_in_window += cost
        window.admitted += 1
        window.max_requests_in_window = max(window.max_requests_in_window, len(window.times))
        window.max_tokens_in_window = max(window.max_tokens_in_window, window.tokens_in_window)
        return Decision(True, headers=self._headers(window, now, cost, rpm, tpm, window_s))

    def peek(self, key: str, now: float, *, rpm: int, tpm: int, window_s: float) -> Decision:
        """Describe ``key``'s window without admitting anything (for errors before admission).

        Args:
            key: The caller's API key.
            now: Monotonic time in seconds.
            rpm: Requests allowed per window; 0 = unlimited.
            tpm: Tokens allowed per window; 0 = unlimited.
            window_s: Window length in seconds.

        Returns:
            A non-admitting decision carrying only headers.
        """
        window = self.windows.get(key) or KeyWindow()
        window.prune(now, window_s)
        return Decision(False, headers=self._headers(window, now, 0, rpm, tpm, window_s))

    @staticmethod
    def _headers(
        window: KeyWindow, now: float, cost: int, rpm: int, tpm: int, window_s: float
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        if rpm:
            wait = window.wait_for_requests(now, window_s, rpm)
            headers["x-ratelimit-limit-requests"] = str(rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, rpm - len(window.times)))
            headers["x-ratelimit-reset-requests"] = format_duration(wait)
        if tpm:
            wait_tokens = window.wait_for_tokens(now, window_s, tpm, min(cost, tpm))
            headers["x-ratelimit-limit-tokens"] = str(tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, tpm - window.tokens_in_window))
            headers["x-ratelimit-reset-tokens"] = format_duration(wait_tokens or 0.0)
        return headers


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
        if rpm:
            bucket.requests -= 1
        if tpm:
            bucket.tokens -= cost
        seen = bucket.seen
        seen.times.append(now)
        seen.costs.append(cost)
        seen.tokens_in_window += cost
        seen.admitted += 1
        seen.max_requests_in_window = max(seen.max_requests_in_window, len(seen.times))
        seen.max_tokens_in_window = max(seen.max_tokens_in_window, seen.tokens_in_window)
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
