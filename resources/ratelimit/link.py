"""How an async limiter reaches its row in a ``RateLimitStore`` without blocking the event loop.

Where the state lives: a ``RateLimitStore`` row per ``limit_key`` (see
``llm_assets.resources.ratelimit.store``): memory (one process), SQLite (processes of one host) or
PostgreSQL (every host). Why a database row rather than Dagster concurrency pools: a pool caps
how many steps run at once, not how many requests per minute they send; a step's request rate
depends on its latency and concurrency, which a pool cannot see, and a pool cannot learn a
limit from headers or share a ``retry-after``. A token bucket in the database that Dagster
already uses (dagster-postgres) needs no new infrastructure (Redis would be one more server
to run) and costs one short ``UPDATE`` per reservation. Each process reserves small batches
(about ``batch_s`` of traffic) so that a busy step makes a few statements per second rather than
one per request; the price is that a process may leave a few reserved units unused when it stops.

Database calls run in a worker thread. Writes decided in synchronous callbacks (a 429, a
header that teaches a limit) are queued and sent by one background task, merged when several
arrive before it runs. If the store fails (the database is down, the file is locked for too
long), the link logs a warning once and carries on with a private in-memory store: the step
keeps pacing at the limit it knows, and only stops sharing it with other steps.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from llm_assets.resources.ratelimit.store import (
    BucketPolicy,
    BucketRates,
    MemoryRateLimitStore,
    RateLimitStore,
    Reservation,
)

logger = logging.getLogger("llm_assets.resources.ratelimit.limiter")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Decrease:
    """How a 429 cuts the shared scale (see ``RateLimitStore.decrease``)."""

    factor: float
    floor: float
    cooldown_s: float
    recovery_per_s: float


@dataclass(slots=True)
class _Pending:
    """Writes waiting for the background flush."""

    learn: tuple[int | None, int | None] | None = None
    pause_s: float = 0.0
    hard_pause: bool = False
    decrease: bool = False

    def __bool__(self) -> bool:
        return self.learn is not None or self.pause_s > 0 or self.decrease


class StoreLink:
    """One limit's row, read and written from an event loop.

    Args:
        store: The shared store.
        key: The limit's ``limit_key``.
        decrease: How a queued decrease cuts the scale.
        on_policy: Called in the event loop with the row's state after every store call.
    """

    def __init__(
        self,
        store: RateLimitStore,
        key: str,
        *,
        decrease: Decrease,
        on_policy: Callable[[BucketPolicy], None],
    ) -> None:
        self.store = store
        self.key = key
        self._decrease = decrease
        self._on_policy = on_policy
        self._latest: BucketPolicy | None = None
        self._pending = _Pending()
        self._flush_task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        """Fetches the row's state."""
        self._seen(await self._call(lambda store: store.read(self.key)))

    async def reserve(self, requests: int, tokens: int, rates: BucketRates) -> Reservation:
        """Takes units from the row's buckets (see ``RateLimitStore.reserve``)."""
        reservation = await self._call(
            lambda store: store.reserve(self.key, requests, tokens, rates)
        )
        self._seen(reservation.policy)
        return reservation

    def queue(
        self,
        *,
        learn: tuple[int | None, int | None] | None = None,
        pause_s: float = 0.0,
        hard: bool = False,
        decrease: bool = False,
    ) -> None:
        """Queues writes; an in-memory store applies them at once, others in the background."""
        pending = self._pending
        if learn is not None:
            earlier = pending.learn or (None, None)
            pending.learn = (
                earlier[0] if learn[0] is None else learn[0],
                earlier[1] if learn[1] is None else learn[1],
            )
        pending.pause_s = max(pending.pause_s, pause_s)
        pending.hard_pause = pending.hard_pause or hard
        pending.decrease = pending.decrease or decrease
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not self.store.blocking:
            self._seen(self._apply(self.store, self._take_pending()))
        elif self._flush_task is None or self._flush_task.done():
            self._flush_task = loop.create_task(self._flush())

    def _take_pending(self) -> _Pending:
        pending, self._pending = self._pending, _Pending()
        return pending

    async def _flush(self) -> None:
        while self._pending:
            pending = self._take_pending()
            self._seen(await self._call(functools.partial(self._apply, pending=pending)))

    def _apply(self, store: RateLimitStore, pending: _Pending) -> BucketPolicy:
        policy = None
        if pending.learn is not None:
            policy = store.learn(self.key, rpm=pending.learn[0], tpm=pending.learn[1])
        if pending.pause_s > 0:
            policy = store.pause(self.key, pending.pause_s, hard=pending.hard_pause)
        if pending.decrease:
            policy = store.decrease(
                self.key,
                factor=self._decrease.factor,
                floor=self._decrease.floor,
                cooldown_s=self._decrease.cooldown_s,
                recovery_per_s=self._decrease.recovery_per_s,
            )
        return policy or store.read(self.key)

    def _seen(self, policy: BucketPolicy) -> None:
        self._latest = policy
        self._on_policy(policy)

    async def _call(self, work: Callable[[RateLimitStore], T]) -> T:
        store = self.store
        try:
            if store.blocking:
                return await asyncio.to_thread(work, store)
            return work(store)
        except store.errors as exc:
            if self.store is not store:  # another call already fell back
                return work(self.store)
            logger.warning(
                "the shared rate-limit store %r failed (%s: %s); this step now paces on its own "
                "and no longer shares the limit with other steps",
                store,
                type(exc).__name__,
                exc,
            )
            self.store = MemoryRateLimitStore()
            if self._latest is not None:
                latest = self._latest
                self.store.learn(self.key, rpm=latest.rpm or None, tpm=latest.tpm or None)
            return work(self.store)
