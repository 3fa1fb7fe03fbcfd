"""How long a failed attempt waits before its retry: short when isolated, longer under overload.

A transient failure (HTTP 408, 409, 5xx, a timeout, a dropped connection) of one attempt among
answers that succeed says nothing about the endpoint's health: it is retried as soon as the
rate limiter allows, after a short jittered pause (up to ``isolated_s``), so the last rows of a
step do not trail the rest by a backoff that grew for the whole step.

The endpoint is *overloaded* (or down) when failures dominate the recent attempts: at least
``min_failures`` of the last ``window`` attempts failed and they are at least
``overload_fraction`` of them. Then a retry waits the classic exponential backoff with jitter
(``backoff_s`` doubling up to ``backoff_max_s`` with the row's failures), and the step starts
no new row for as long (``hold_until``). A ``retry-after`` header is overload evidence
too: it is honoured as a pause for the step. 429s belong to the rate limiter, which pauses
every caller of the key; the row then waits ``retry-after`` or the exponential backoff.

Examples:
    >>> import random
    >>> policy = RetryPolicy(0.5, 30.0, random.Random(0), clock=lambda: 100.0)
    >>> policy.record(ok=True); policy.record(ok=False)
    >>> policy.overloaded, policy.after_failure(1, None) <= 0.1
    (False, True)
    >>> for _ in range(4):
    ...     policy.record(ok=False)
    >>> policy.overloaded, 1.0 <= policy.after_failure(3, None) <= 2.0, policy.hold_until > 100
    (True, True, True)
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable


class RetryPolicy:
    """Decides retry delays from the recent outcomes of one step's attempts.

    Args:
        backoff_s: First backoff under overload; doubles per failure of the row.
        backoff_max_s: Longest backoff.
        rng: Jitter source.
        clock: Monotonic time in seconds.
        isolated_s: Longest pause before retrying an isolated failure.
        window: How many recent attempts are looked at.
        min_failures: Failures among them needed to call it overload.
        overload_fraction: Share of failures among them needed to call it overload.
    """

    def __init__(
        self,
        backoff_s: float,
        backoff_max_s: float,
        rng: random.Random,
        *,
        clock: Callable[[], float] = time.monotonic,
        isolated_s: float = 0.1,
        window: int = 20,
        min_failures: int = 4,
        overload_fraction: float = 0.6,
    ) -> None:
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._rng = rng
        self._clock = clock
        self._isolated_s = min(isolated_s, backoff_s)
        self._recent: deque[bool] = deque(maxlen=window)
        self._failures = 0
        self._min_failures = min_failures
        self._overload_fraction = overload_fraction
        self.hold_until = 0.0
        """No new row of the step should start before this time (overload, retry-after)."""

    def record(self, *, ok: bool) -> None:
        """Notes one attempt's outcome; ``ok=False`` for a transient failure (not a 429)."""
        if len(self._recent) == self._recent.maxlen and not self._recent[0]:
            self._failures -= 1
        self._recent.append(ok)
        if not ok:
            self._failures += 1

    @property
    def overloaded(self) -> bool:
        """True when failures dominate the recent attempts."""
        failures = self._failures
        return failures >= self._min_failures and (
            failures >= self._overload_fraction * len(self._recent)
        )

    def backoff(self, failures: int) -> float:
        """The exponential backoff after a row's ``failures``-th failure, with jitter."""
        delay = min(self._backoff_max_s, self._backoff_s * 2 ** (failures - 1))
        return delay * (0.5 + self._rng.random() / 2)

    def after_failure(self, failures: int, retry_after: float | None) -> float:
        """Seconds before retrying a row after its ``failures``-th transient failure."""
        if retry_after is None and not self.overloaded:
            return self._rng.random() * self._isolated_s
        delay = self.backoff(failures) if self.overloaded else 0.0
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.hold_until = max(self.hold_until, self._clock() + delay)
        return delay

    def after_rate_limit(self, rejections: int, retry_after: float | None) -> float:
        """Seconds before retrying a row after its ``rejections``-th 429."""
        if retry_after is not None:
            return retry_after + self._rng.random() * self._isolated_s
        return self.backoff(rejections)
