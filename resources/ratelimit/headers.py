"""The rate-limiter interface the engine consults before every attempt, and header parsing.

Providers describe the caller's limits in response headers (OpenAI's spelling)::

    x-ratelimit-limit-requests: 500        x-ratelimit-limit-tokens: 200000
    x-ratelimit-remaining-requests: 499    x-ratelimit-remaining-tokens: 199000
    x-ratelimit-reset-requests: 120ms      x-ratelimit-reset-tokens: 6m0s

``parse_rate_limit_headers`` reads them; ``limiter`` learns from them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


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


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """What one response said about the caller's limits; ``None`` where it said nothing.

    Attributes:
        limit_requests: Requests allowed per window.
        limit_tokens: Tokens allowed per window.
        remaining_requests: Requests left in the window when the request was admitted.
        remaining_tokens: Tokens left in the window when the request was admitted.
        reset_requests_s: Seconds until the request budget frees up.
        reset_tokens_s: Seconds until the token budget frees up.
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @property
    def has_limits(self) -> bool:
        """True when the response advertised at least one limit."""
        return bool(self.limit_requests) or bool(self.limit_tokens)


def parse_duration(text: str) -> float | None:
    """Parses a reset duration such as ``"1s"``, ``"120ms"``, ``"6m0s"`` or ``"0.5"`` (seconds).

    Examples:
        >>> parse_duration("6m0s"), parse_duration("120ms"), parse_duration("1h2m3.5s")
        (360.0, 0.12, 3723.5)
        >>> parse_duration("soon") is None
        True
    """
    text = text.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(text))
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return int(float(value))
    return None


def _duration_header(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    return None if value is None else parse_duration(value)


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHeaders:
    """Reads OpenAI-style ``x-ratelimit-*`` headers (any letter case).

    Examples:
        >>> info = parse_rate_limit_headers(
        ...     {"X-RateLimit-Limit-Requests": "60", "x-ratelimit-reset-requests": "250ms"}
        ... )
        >>> info.limit_requests, info.reset_requests_s, info.limit_tokens
        (60, 0.25, None)
    """
    lowered = {k.lower(): v for k, v in headers.items() if k[:12].lower() == "x-ratelimit-"}
    if not lowered:
        return RateLimitHeaders()
    return RateLimitHeaders(
        limit_requests=_int_header(lowered, "x-ratelimit-limit-requests"),
        limit_tokens=_int_header(lowered, "x-ratelimit-limit-tokens"),
        remaining_requests=_int_header(lowered, "x-ratelimit-remaining-requests"),
        remaining_tokens=_int_header(lowered, "x-ratelimit-remaining-tokens"),
        reset_requests_s=_duration_header(lowered, "x-ratelimit-reset-requests"),
        reset_tokens_s=_duration_header(lowered, "x-ratelimit-reset-tokens"),
    )


def tokens_exhausted(info: RateLimitHeaders, est_tokens: int) -> bool:
    """True when the headers say fewer tokens remain than a request of ``est_tokens`` needs."""
    return (
        bool(info.limit_tokens)
        and info.remaining_tokens is not None
        and (info.remaining_tokens < max(1, est_tokens))
    )
