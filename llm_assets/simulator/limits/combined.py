"""The ``combined`` mode: a per-minute limit enforced per second and over the minute, at once.

A request must fit both the ``bucket`` mode's continuous buckets (refilled at
``limit / window_s`` per second, holding ``burst_s`` of refill) and the ``window`` mode's
sliding window (at most the limit in any ``window_s``). A client that keeps to the refill rate
is never stopped by the bucket, yet the window still counts the burst it sent when the bucket
was full: sending at exactly the refill rate after a burst overfills the window about one
``window_s`` later.

Headers: each dimension (requests, tokens) reports the limit that binds it, the one with less
room left: ``x-ratelimit-remaining-*`` is the smaller of what the bucket holds and what the
window has left, and ``x-ratelimit-reset-*`` is that limit's own reset (the bucket: until it is
full again; the window: until one more request, or this request's tokens, fits). A 429's
``retry-after`` is the time until the request fits both limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llm_assets.simulator.limits.bucket import BucketLimiter, BucketShape, KeyBucket
from llm_assets.simulator.limits.window import Decision, format_duration


@dataclass(frozen=True)
class Room:
    """How much of one limit (a bucket or the window) is left for one dimension.

    Attributes:
        remaining: Whole units left now (never below 0).
        wait_s: Seconds until this request fits; None if it never can.
        reset_s: The ``x-ratelimit-reset-*`` this limit would report.
    """

    remaining: int
    wait_s: float | None
    reset_s: float


class CombinedLimiter(BucketLimiter):
    """Buckets refilled every second and a sliding window over ``window_s``, one set per key.

    Same threading rules as ``RateLimiter``; rejected requests are not recorded.

    Examples:
        >>> limiter = CombinedLimiter()
        >>> limits = {"rpm": 480, "tpm": 0, "window_s": 60.0, "burst_s": 1.0}  # 8 a second
        >>> burst = [limiter.admit("k", 0, 0.0, **limits) for _ in range(8)]  # a full bucket
        >>> paced = [limiter.admit("k", 0, i / 8, **limits) for i in range(1, 473)]
        >>> all(d.admitted for d in burst + paced)  # 480 by t = 59 s, at the refill rate
        True
        >>> decision = limiter.admit("k", 0, 59.5, **limits)  # room in the bucket, not the window
        >>> decision.admitted, decision.retry_after_s
        (False, 0.5)
        >>> {name[12:]: value for name, value in decision.headers.items()}
        {'limit-requests': '480', 'remaining-requests': '0', 'reset-requests': '500ms'}
    """

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
            rpm: Requests per ``window_s``, refilled continuously; 0 = unlimited.
            tpm: Tokens per ``window_s``, refilled continuously; 0 = unlimited.
            window_s: The period the limits are stated per, and the sliding window's length.
            burst_s: Seconds of refill each bucket holds.

        Returns:
            The decision, with rate-limit headers describing both limits after it.
        """
        shapes = (BucketShape.of(rpm, window_s, burst_s), BucketShape.of(tpm, window_s, burst_s))
        bucket = self._bucket(key, now, shapes)
        bucket.seen.prune(now, window_s)
        binding = self._binding(bucket, shapes, cost, now, rpm=rpm, tpm=tpm, window_s=window_s)
        waits = {name: room.wait_s for name, room in binding.items()}
        blocked = {name: wait for name, wait in waits.items() if wait is None or wait > 0}
        if blocked:
            bucket.seen.rate_limited += 1
            never = [name for name, wait in blocked.items() if wait is None]
            retry_after = None if never else max(w for w in blocked.values() if w is not None)
            limited_by = never[0] if never else max(blocked, key=lambda n: blocked[n] or 0.0)
            used = (rpm if limited_by == "requests" else tpm) - binding[limited_by].remaining
            return Decision(False, limited_by, retry_after, used, self._describe(binding, rpm, tpm))
        self._charge(bucket, cost, now, rpm=rpm, tpm=tpm)
        after = self._binding(bucket, shapes, cost, now, rpm=rpm, tpm=tpm, window_s=window_s)
        return Decision(True, headers=self._describe(after, rpm, tpm))

    def peek(
        self, key: str, now: float, *, rpm: int, tpm: int, window_s: float, burst_s: float
    ) -> Decision:
        """Describe ``key``'s limits without admitting anything (for errors before admission).

        Args:
            key: The caller's API key.
            now: Monotonic time in seconds.
            rpm: Requests per ``window_s``; 0 = unlimited.
            tpm: Tokens per ``window_s``; 0 = unlimited.
            window_s: The period the limits are stated per, and the sliding window's length.
            burst_s: Seconds of refill each bucket holds.

        Returns:
            A non-admitting decision carrying only headers.
        """
        shapes = (BucketShape.of(rpm, window_s, burst_s), BucketShape.of(tpm, window_s, burst_s))
        bucket = self._bucket(key, now, shapes)
        bucket.seen.prune(now, window_s)
        binding = self._binding(bucket, shapes, 0, now, rpm=rpm, tpm=tpm, window_s=window_s)
        return Decision(False, headers=self._describe(binding, rpm, tpm))

    @staticmethod
    def _binding(
        bucket: KeyBucket,
        shapes: tuple[BucketShape, BucketShape],
        cost: int,
        now: float,
        *,
        rpm: int,
        tpm: int,
        window_s: float,
    ) -> dict[str, Room]:
        """Per limited dimension, the room of the limit that binds it for a request of ``cost``.

        The request fits when it fits both limits, so its wait is the longer of the two; the
        headers describe the limit with fewer whole units left (on a tie, the one that takes
        longer to make room).
        """
        seen = bucket.seen
        rooms: dict[str, Room] = {}
        if rpm:
            in_bucket = Room(
                max(0, math.floor(bucket.requests)),
                shapes[0].wait(bucket.requests, 1),
                shapes[0].wait(bucket.requests, shapes[0].capacity),
            )
            request_wait = seen.wait_for_requests(now, window_s, rpm)
            in_window = Room(max(0, rpm - len(seen.times)), request_wait, request_wait)
            rooms["requests"] = _tighter(in_bucket, in_window)
        if tpm:
            need = min(cost, shapes[1].capacity)
            in_bucket = Room(
                max(0, math.floor(bucket.tokens)),
                shapes[1].wait(bucket.tokens, need),
                shapes[1].wait(bucket.tokens, shapes[1].capacity),
            )
            token_wait = seen.wait_for_tokens(now, window_s, tpm, cost)
            in_window = Room(
                max(0, tpm - seen.tokens_in_window),
                token_wait,
                seen.wait_for_tokens(now, window_s, tpm, min(cost, tpm)) or 0.0,
            )
            rooms["tokens"] = _tighter(in_bucket, in_window)
        return rooms

    @staticmethod
    def _describe(rooms: dict[str, Room], rpm: int, tpm: int) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, limit in (("requests", rpm), ("tokens", tpm)):
            room = rooms.get(name)
            if limit and room is not None:
                headers[f"x-ratelimit-limit-{name}"] = str(limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(room.remaining)
                headers[f"x-ratelimit-reset-{name}"] = format_duration(room.reset_s)
        return headers


def _tighter(in_bucket: Room, in_window: Room) -> Room:
    """The room of the limit that binds, carrying the wait for both limits together."""
    waits = (in_bucket.wait_s, in_window.wait_s)
    wait = None if None in waits else max(w or 0.0 for w in waits)
    window_longer = in_window.wait_s is None or (in_window.wait_s > (in_bucket.wait_s or 0.0))
    window_binds = in_window.remaining < in_bucket.remaining or (
        in_window.remaining == in_bucket.remaining and window_longer
    )
    binding = in_window if window_binds else in_bucket
    return Room(binding.remaining, wait, binding.reset_s)
