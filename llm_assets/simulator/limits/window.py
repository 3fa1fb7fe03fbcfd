"""The ``window`` mode: at most the limit in any sliding window, plus what every mode shares.

A sliding window holds the admissions of the last ``window_s`` seconds, i.e. the half-open
interval ``(now - window_s, now]``, and admits up to the limit in it. ``x-ratelimit-reset-*`` is
the time until one more request (or one more of this request's tokens) fits.
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

    def record(self, now: float, cost: int) -> None:
        """Count one admission of ``cost`` tokens at ``now`` and update the peaks."""
        self.times.append(now)
        self.costs.append(cost)
        self.tokens_in_window += cost
        self.admitted += 1
        self.max_requests_in_window = max(self.max_requests_in_window, len(self.times))
        self.max_tokens_in_window = max(self.max_tokens_in_window, self.tokens_in_window)

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
        window.record(now, cost)
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
