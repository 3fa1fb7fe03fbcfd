"""The rate-limiter interface the engine consults before every attempt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class RateLimiter(Protocol):
    """Decides when the next attempt may start, and learns from what the endpoint says."""

    async def acquire(self, tokens: int) -> None:
        """Waits until one request of about ``tokens`` tokens fits the limits."""

    def observe(self, headers: Mapping[str, str], *, used_tokens: int, est_tokens: int) -> None:
        """Learns from a response's rate-limit headers and corrects the token estimate."""

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """Reacts to a 429: slow down."""


class UnlimitedRateLimiter:
    """A limiter that never waits; concurrency alone bounds the request rate.

    Examples:
        >>> import asyncio
        >>> asyncio.run(UnlimitedRateLimiter().acquire(100))
    """

    async def acquire(self, tokens: int) -> None:
        """Returns at once."""

    def observe(self, headers: Mapping[str, str], *, used_tokens: int, est_tokens: int) -> None:
        """Ignores the headers."""

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """Ignores the 429; the engine's backoff still applies."""
