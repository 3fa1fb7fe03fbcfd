"""Adaptive rate limiter: runs at the provider's limit without being told what it is.

How it paces (per API key, whatever the number of steps and runs sharing it):

- **Learn.** Until the first answer arrives one probe request goes out (one more per
  ``probe_interval_s`` if it is slow), so N workers do not start with N rejected requests.
  Every answer's ``x-ratelimit-limit-*`` headers give the requests and tokens allowed per
  ``window_s`` (60 s for OpenAI). An endpoint that sends no such headers is not paced, but a
  429 from it sets a limit from what was just sent. A step that starts after another one
  learned the key's limits reads them from the store and paces from its first request.
- **Pace.** Requests are spaced evenly just under the limit, as the provider's ``model``
  (``bucket`` or ``window``) allows: see ``llm_assets.resources.ratelimit.pacing``.
- **React.** A 429 multiplies ``scale`` by ``decrease_factor`` (at most once per cooldown, so
  one burst of rejections is one event) and ``scale`` climbs back linearly by
  ``recovery_per_window`` per window (AIMD). ``retry-after`` pauses everyone sharing the key;
  requests already waiting for their turn take a new one after the pause. Headers saying the
  budget is spent (``remaining`` below what a request needs) hold new reservations: in a bucket
  until the refill covers the request (at most the header's ``reset``), in a window until its
  ``reset``.

Where the state lives: a ``RateLimitStore`` row per ``limit_key``, shared across processes
and hosts (why a database row, and how it is reached: ``llm_assets.resources.ratelimit.link``).

Time comes from ``clock`` and waits from ``sleep`` (``time.monotonic`` and ``asyncio.sleep``
by default), so the pacing can be run on a simulated clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from llm_assets.resources.ratelimit.headers import parse_rate_limit_headers, tokens_exhausted
from llm_assets.resources.ratelimit.link import Decrease, StoreLink
from llm_assets.resources.ratelimit.pacing import DEFAULT_TARGETS, Lease, LimitModel, Pacing
from llm_assets.resources.ratelimit.store import BucketPolicy, BucketRates, RateLimitStore

logger = logging.getLogger(__name__)

_ANSWER_POLL_S = 0.01
"""While the first answer is awaited, how often a waiting caller looks whether it came."""


class AdaptiveRateLimiter:
    """Paces one step's requests under a provider limit shared through a ``RateLimitStore``.

    Args:
        store: Where the limit's state is shared.
        key: The limit's id, ``limit_key(base_url, api_key)``.
        window_s: The period the provider's limits are stated per, in seconds (60 for
            per-minute limits).
        target: Fraction of the learned limit to aim for; None = 1.0 for the bucket model,
            0.97 for the window model.
        model: ``bucket`` (the provider refills a bucket continuously, as OpenAI does) or
            ``window`` (it counts a sliding window).
        rpm_limit: Requests per window to stay under even if headers allow more.
        tpm_limit: Tokens per window to stay under even if headers allow more.
        burst_fraction: Window model: bucket capacity as a fraction of the limit.
        bucket_burst_s: Bucket model: bucket capacity in seconds of the rate.
        lateness_s: Bucket model: how late a request may reach the provider after its turn
            (connections opening, a busy event loop); every window keeps room for it.
        decrease_factor: Scale multiplier on a 429.
        min_scale: Lowest scale.
        recovery_per_window: Scale regained per window after a decrease.
        probe_interval_s: While no limit is known, one more request may go this often.
        batch_s: Traffic reserved per store call when the store is a database.
        max_batch: Most requests reserved per store call.
        clock: Monotonic time in seconds.
        sleep: Waits that many seconds.

    Examples:
        >>> import asyncio
        >>> from llm_assets.resources.ratelimit.store import MemoryRateLimitStore, limit_key
        >>> limiter = AdaptiveRateLimiter(
        ...     MemoryRateLimitStore(), limit_key("http://x/v1", "k"), window_s=1.0, rpm_limit=100
        ... )
        >>> asyncio.run(limiter.acquire(10))
        >>> limiter.limits
        (100, 0)
    """

    def __init__(
        self,
        store: RateLimitStore,
        key: str,
        *,
        window_s: float = 60.0,
        target: float | None = None,
        model: LimitModel = "bucket",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        burst_fraction: float = 0.01,
        bucket_burst_s: float = 0.2,
        lateness_s: float = 0.2,
        decrease_factor: float = 0.7,
        min_scale: float = 0.05,
        recovery_per_window: float = 0.5,
        probe_interval_s: float = 1.0,
        batch_s: float = 0.1,
        max_batch: int = 32,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if model not in DEFAULT_TARGETS:
            raise ValueError(f"model must be 'bucket' or 'window', got {model!r}")
        target = DEFAULT_TARGETS[model] if target is None else target
        if window_s <= 0 or not 0 < target <= 1:
            raise ValueError(f"need window_s > 0 and 0 < target <= 1, got {window_s}, {target}")
        self._clock = clock
        self._sleep = sleep
        self.model = model
        self._cooldown_s = min(5.0, max(0.5, window_s / 10))
        self._decrease = Decrease(
            decrease_factor, min_scale, self._cooldown_s, recovery_per_window / window_s
        )
        self._link = StoreLink(store, key, decrease=self._decrease, on_policy=self._set_policy)
        self.window_s = window_s
        self.target = target
        self._pacing = Pacing(model, window_s, target, burst_fraction, bucket_burst_s, lateness_s)
        self._caps = (rpm_limit or 0, tpm_limit or 0)
        self._default_pause_s = min(2.0, max(0.05, window_s / 30))
        self._probe_interval_s = probe_interval_s
        self._batch_s = batch_s
        self._max_batch = max_batch
        self._policy: BucketPolicy | None = None
        self._header_limits: tuple[int, int] = (0, 0)
        self._offset = 0.0  # store clock minus this limiter's clock
        self._lease: Lease | None = None
        self._paused_until = 0.0
        self._unadvertised = False
        self._next_probe_at = 0.0
        self._extra_tokens = 0
        self._unbilled_requests = 0
        self._pacing_since: float | None = None
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()

    @property
    def limits(self) -> tuple[int, int]:
        """(requests, tokens) per window in force: learned, capped by overrides; 0 = unknown."""
        stored = (self._policy.rpm, self._policy.tpm) if self._policy else (0, 0)
        # What this process read in headers is fresher than a store row not yet updated.
        rpm = self._header_limits[0] or stored[0]
        tpm = self._header_limits[1] or stored[1]
        return (_min_known(rpm, self._caps[0]), _min_known(tpm, self._caps[1]))

    @property
    def scale(self) -> float:
        """The AIMD scale now: 1.0 aims at ``target`` x the limit."""
        if self._policy is None:
            return 1.0
        now = self._clock() + self._offset
        return self._policy.scale_at(now, self._decrease.recovery_per_s)

    async def acquire(self, tokens: int) -> None:
        """Waits until one request of about ``tokens`` tokens fits the limits."""
        tokens = max(0, int(tokens))
        if self._policy is None:
            async with self._lock:
                if self._policy is None:
                    await self._link.read()
        while True:
            now = self._clock()
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
                continue
            if self.limits == (0, 0):
                if self._unadvertised:
                    self._note_send(now)
                    return
                if await self._slow_start(now):
                    # Probes go before any bucket exists; the first reservation pays for them.
                    self._unbilled_requests += 1
                    self._extra_tokens += tokens
                    return
                continue
            at = self._lease.take(tokens, now) if self._lease is not None else None
            if at is None:
                at = await self._reserve(tokens)
            delay = at - self._clock()
            if delay > 0:
                await self._sleep(delay)
            if self._clock() >= self._paused_until:
                return
            # A retry-after pause began while this request waited: take a new place after it.

    def observe(self, headers: Mapping[str, str], *, used_tokens: int, est_tokens: int) -> None:
        """Learns limits from headers, charges usage above the estimate, respects a full window."""
        info = parse_rate_limit_headers(headers)
        self._extra_tokens += max(0, used_tokens - est_tokens)
        if info.has_limits:
            self._learn(info.limit_requests, info.limit_tokens)
        elif self.limits == (0, 0):
            self._unadvertised = True
        rpm, tpm = self.limits
        hold = 0.0
        if info.remaining_requests == 0 and info.reset_requests_s:
            hold = self._pacing.hold(info.reset_requests_s, 1, rpm)
        if tokens_exhausted(info, est_tokens) and info.reset_tokens_s:
            missing = max(1, est_tokens) - (info.remaining_tokens or 0)
            hold = max(hold, self._pacing.hold(info.reset_tokens_s, missing, tpm))
        if hold > 0:
            self._link.queue(pause_s=hold, hard=False)

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """A 429: pause everyone for ``retry-after`` and cut the rate."""
        pause_s = self._default_pause_s if retry_after_s is None else retry_after_s
        now = self._clock()
        self._paused_until = max(self._paused_until, now + pause_s)
        self._lease = None
        if self.limits == (0, 0):
            horizon = now - self.window_s
            self._learn(max(1, sum(1 for sent in self._sent if sent > horizon)), None)
            logger.info("no rate-limit headers; assuming %d requests per window", self.limits[0])
        if self._policy is not None and now + self._offset - self._policy.decreased_at > (
            self._cooldown_s
        ):
            scale = max(self._decrease.floor, self.scale * self._decrease.factor)
            self._policy = replace(self._policy, scale=scale, decreased_at=now + self._offset)
        self._link.queue(pause_s=pause_s, hard=True, decrease=True)

    async def _slow_start(self, now: float) -> bool:
        """True when this caller may go as a probe; otherwise waits for an answer or a turn."""
        if now >= self._next_probe_at:
            self._next_probe_at = now + self._probe_interval_s
            return True
        await self._sleep(min(self._next_probe_at - now, _ANSWER_POLL_S))
        return False

    def _note_send(self, now: float) -> None:
        self._sent.append(now)
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()

    def _rates(self, tokens: int) -> BucketRates:
        limits = self.limits
        now = self._clock()
        if self._pacing_since is None:
            self._pacing_since = now
        return self._pacing.rates(limits, self.scale, now - self._pacing_since, tokens)

    async def _reserve(self, tokens: int) -> float:
        async with self._lock:
            now = self._clock()
            if self._lease is not None:
                at = self._lease.take(tokens, now)
                if at is not None:
                    return at
            rates = self._rates(tokens)
            batch = 1
            if self._link.store.blocking:
                per_request_s = max(rates.request_spacing_s, tokens * rates.token_spacing_s)
                if per_request_s > 0:
                    batch = max(1, min(self._max_batch, int(self._batch_s / per_request_s)))
            extra_tokens, self._extra_tokens = self._extra_tokens, 0
            extra_requests, self._unbilled_requests = self._unbilled_requests, 0
            reservation = await self._link.reserve(
                batch + extra_requests, batch * tokens + extra_tokens, rates
            )
            old = self._lease
            keep = old is not None and self._clock() <= old.expires_at
            requests_at = reservation.requests_at - self._offset
            tokens_at = reservation.tokens_at - self._offset
            self._lease = Lease(
                requests=batch + (old.requests if keep and old else 0),
                tokens=batch * tokens + (max(0, old.tokens) if keep and old else 0),
                requests_at=requests_at,
                tokens_at=tokens_at,
                rates=rates,
                not_before=self._paused_until,
                expires_at=max(requests_at, tokens_at) + 0.25,
            )
            return self._lease.take(tokens, self._clock()) or self._clock()

    def _learn(self, rpm: int | None, tpm: int | None) -> None:
        known = (rpm or self._header_limits[0], tpm or self._header_limits[1])
        if known == self._header_limits:
            return
        self._header_limits = known
        logger.info(
            "provider rate limit: %s requests and %s tokens per %g s window",
            known[0] or "no",
            known[1] or "no",
            self.window_s,
        )
        self._lease = None
        self._link.queue(learn=(rpm, tpm))

    def _set_policy(self, policy: BucketPolicy) -> None:
        self._offset = policy.now - self._clock()
        self._policy = policy
        paused_until = policy.paused_until - self._offset
        if paused_until > self._paused_until:
            self._paused_until = paused_until
            self._lease = None


def _min_known(learned: int, cap: int) -> int:
    """The smaller of two limits where 0 means unknown."""
    return min(learned, cap) if learned and cap else learned or cap
