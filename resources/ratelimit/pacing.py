"""The window and bucket models: how fast requests go under a learned limit.

Two GCRA token buckets (requests, tokens) release requests evenly at ``target`` x ``scale`` x
limit / ``window_s`` per second. How close to the limit that may be depends on how the provider
counts (``model``):

- ``bucket`` (OpenAI, Azure OpenAI, Anthropic): the provider refills a bucket continuously
  at limit / window_s per second that holds about a second of burst, *and* admits at most
  the limit in any whole ``window_s``. Requests released no faster than the refill pass the
  bucket however late or bunched they reach it, but a burst followed by the full refill rate
  overfills the window one ``window_s`` later, and so do late arrivals at exactly that rate.
  So the limiter paces from the first answer on at the rate whose every ``window_s`` holds at
  most the limit, counting its own burst (``bucket_burst_s``, 0.2 s) and requests reaching
  the provider up to ``lateness_s`` (0.2 s) late: (limit - 1) per (``window_s`` +
  ``bucket_burst_s`` + ``lateness_s``), 99.2% of a per-minute limit of 600 (``target`` 1.0).
- ``window`` (a server that counts a sliding window): requests that reach it late and
  bunched can overfill a window, so the limiter aims at ``target`` 0.97, holds at most
  ``burst_fraction`` (1%) of the limit as burst, and a step starts at 80% of the rate and
  ramps up over a quarter window while its first connections open.

A request reserves one request and its estimated tokens (prompt estimate + ``max_tokens``,
which the provider counts at admission); reported usage above the estimate is charged to the
next reservation. Nothing is refunded when usage is below it: the provider counted
``max_tokens`` already. A process reserves a few units at a time (a ``Lease``) and releases
each at its own turn.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from llm_assets.resources.ratelimit.store import BucketRates

START_SCALE = 0.8
"""Window model: a step's first requests open new connections and reach the provider late and
bunched; it starts at this fraction of the rate and reaches the full rate within a quarter
window. A bucket absorbs that, so the bucket model starts at the full rate."""

LimitModel = Literal["bucket", "window"]
"""How the provider counts its limit: a continuously refilled bucket, or a sliding window."""

DEFAULT_TARGETS: dict[str, float] = {"bucket": 1.0, "window": 0.97}
"""The fraction of the limit each model aims for unless ``target`` is given."""


@dataclass(frozen=True, slots=True)
class Pacing:
    """The spacing of requests and tokens under a limit, by the provider's ``model``.

    The fields are ``AdaptiveRateLimiter``'s arguments of the same names.
    """

    model: LimitModel
    window_s: float
    target: float
    burst_fraction: float
    bucket_burst_s: float
    lateness_s: float

    @property
    def ramp_s(self) -> float:
        """Window model: seconds from ``START_SCALE`` of the rate to the full rate."""
        return min(5.0, self.window_s / 4) / (1 - START_SCALE)

    def rates(
        self, limits: tuple[int, int], scale: float, pacing_for_s: float, tokens: int
    ) -> BucketRates:
        """The buckets' rates for ``limits`` at ``scale``, ``pacing_for_s`` after pacing began."""
        rpm, tpm = limits
        ramp = 1.0
        if self.model == "window":
            ramp = min(1.0, START_SCALE + pacing_for_s / self.ramp_s)
        per_limit_per_s = self.target * scale * ramp / self.window_s
        rates = BucketRates()
        if rpm:
            spacing = self.window_guard(rpm, 1) / (rpm * per_limit_per_s)
            rates = replace(
                rates, request_spacing_s=spacing, request_burst_s=self.burst(rpm, spacing)
            )
        if tpm:
            spacing = self.window_guard(tpm, max(1, tokens)) / (tpm * per_limit_per_s)
            rates = replace(rates, token_spacing_s=spacing, token_burst_s=self.burst(tpm, spacing))
        return rates

    def window_guard(self, limit: int, unit: int) -> float:
        """Bucket model: how much longer than the refill rate's the spacing must be.

        A bucket of ``burst`` seconds paced at ``spacing`` releases at most ``(span + burst) /
        spacing`` units plus the one in hand in any ``span``; the provider's window of
        ``window_s`` counts releases of ``window_s + lateness_s``. Keeping that under the limit
        gives ``spacing = (window_s + burst + lateness_s) / (limit - unit)`` per unit.
        """
        if self.model != "bucket":
            return 1.0
        span = self.window_s + self.bucket_burst_s + self.lateness_s
        return span / self.window_s * limit / max(limit - unit, limit / 2)

    def burst(self, limit: int, spacing: float) -> float:
        """The local bucket's capacity in seconds: at least one unit."""
        if self.model == "bucket":
            return max(spacing, self.bucket_burst_s)
        return max(1.0, self.burst_fraction * limit) * spacing

    def hold(self, reset_s: float, missing: int, limit: int) -> float:
        """How long a spent budget holds new reservations.

        In a bucket until the refill covers what is missing (at most the header's ``reset``),
        in a window until its ``reset``.
        """
        if self.model == "bucket" and limit:
            return min(reset_s, missing * self.window_s / limit)
        return reset_s


@dataclass(slots=True)
class Lease:
    """Units this process reserved and has not used yet; each may go at its own time."""

    requests: int
    tokens: int
    requests_at: float
    tokens_at: float
    rates: BucketRates
    not_before: float
    expires_at: float

    def take(self, tokens: int, now: float) -> float | None:
        """The local time one request of ``tokens`` may go, or None if the lease lacks units."""
        limits_tokens = self.rates.token_spacing_s > 0
        if now > self.expires_at or self.requests < 1 or (limits_tokens and self.tokens < tokens):
            return None
        self.requests -= 1
        self.tokens -= tokens
        # Units are released in order: the last one at *_at, each earlier one a spacing sooner.
        at = self.not_before
        if self.rates.request_spacing_s > 0:
            at = max(at, self.requests_at - self.requests * self.rates.request_spacing_s)
        if limits_tokens:
            at = max(at, self.tokens_at - self.tokens * self.rates.token_spacing_s)
        return at
