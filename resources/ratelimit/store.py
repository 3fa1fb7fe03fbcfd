"""Where a provider limit's shared state lives: one row per limit key, three backends.

A row holds what every caller of one API key must agree on: the limits learned from headers,
the AIMD scale with the time of its last decrease, a pause, and two GCRA token buckets (one
for requests, one for tokens). A GCRA bucket is a single number, the *theoretical arrival
time* ``tat``: reserving ``n`` units at ``now`` sets ``tat = max(tat, now - burst_s) +
n * spacing_s`` and the units may be used from the new ``tat`` on. ``burst_s`` is the bucket's
capacity expressed in time, so an idle bucket lets ``burst_s / spacing_s`` units through at
once and never more; any interval of length ``W`` then holds at most that burst plus
``W / spacing_s`` units. Keeping the bucket to one number per dimension makes each reservation
one atomic statement in SQL.

Backends: ``MemoryRateLimitStore`` (one process), and in ``sql`` SQLite
(processes on one host) and PostgreSQL (every host). Times are seconds on the store's clock;
each answer carries that clock's ``now`` so callers convert to their own.
"""

from __future__ import annotations

import abc
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


def limit_key(base_url: str, api_key: str) -> str:
    """The id of one provider limit: a hash of the endpoint and API key, never the key itself.

    Examples:
        >>> key = limit_key("https://api.openai.com/v1/", "sk-secret")
        >>> len(key), "sk-secret" in key, key == limit_key("https://api.openai.com/v1", "sk-secret")
        (32, False, True)
    """
    material = f"llm-assets-rate-limit\0{base_url.rstrip('/')}\0{api_key}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """The shared, slowly changing part of a limit's state, as the store saw it at ``now``.

    Attributes:
        now: The store's clock when it answered.
        rpm: Requests per window learned from headers; 0 while unknown.
        tpm: Tokens per window learned from headers; 0 while unknown.
        scale: The AIMD scale right after the last decrease (1.0 = the full target).
        decreased_at: When ``scale`` was last decreased (0 = never).
        paused_until: No caller may send before this time (a ``retry-after`` pause).
    """

    now: float
    rpm: int = 0
    tpm: int = 0
    scale: float = 1.0
    decreased_at: float = 0.0
    paused_until: float = 0.0

    def scale_at(self, when: float, recovery_per_s: float) -> float:
        """The scale at ``when``: it climbs back linearly after each decrease, up to 1."""
        return min(1.0, self.scale + recovery_per_s * max(0.0, when - self.decreased_at))


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to ``reserve``: when the reserved units may be used, on the store's clock.

    Attributes:
        requests_at: The request bucket's ``tat`` after the reservation.
        tokens_at: The token bucket's ``tat`` after the reservation.
        policy: The row's shared state at the same moment.
    """

    requests_at: float
    tokens_at: float
    policy: BucketPolicy


@dataclass(frozen=True, slots=True)
class BucketRates:
    """How one reservation paces each dimension; a spacing of 0 means "not limited".

    Attributes:
        request_spacing_s: Seconds per request at the current rate.
        request_burst_s: Capacity of the request bucket, in seconds of that rate.
        token_spacing_s: Seconds per token at the current rate.
        token_burst_s: Capacity of the token bucket, in seconds of that rate.
    """

    request_spacing_s: float = 0.0
    request_burst_s: float = 0.0
    token_spacing_s: float = 0.0
    token_burst_s: float = 0.0


class RateLimitStore(abc.ABC):
    """Atomic operations on the shared state of provider limits, keyed by ``limit_key``.

    Every operation creates the row on first use and returns the row's state after it.
    ``blocking`` tells async callers whether a call may wait on I/O (run it in a thread).
    """

    blocking: bool = True
    errors: tuple[type[Exception], ...] = ()
    """Exceptions meaning "the store is unavailable"; callers may fall back to memory."""

    @abc.abstractmethod
    def reserve(self, key: str, requests: int, tokens: int, rates: BucketRates) -> Reservation:
        """Takes ``requests`` and ``tokens`` units from the buckets, queueing behind others."""

    @abc.abstractmethod
    def learn(self, key: str, *, rpm: int | None, tpm: int | None) -> BucketPolicy:
        """Records limits read from headers; ``None`` keeps the stored value."""

    @abc.abstractmethod
    def pause(self, key: str, seconds: float, *, hard: bool) -> BucketPolicy:
        """Holds every bucket until ``now + seconds``; ``hard`` also sets ``paused_until``.

        A hard pause (a 429's ``retry-after``) tells callers to give back units they already
        hold; a soft one (headers saying the window is full) only delays new reservations.
        """

    @abc.abstractmethod
    def decrease(
        self, key: str, *, factor: float, floor: float, cooldown_s: float, recovery_per_s: float
    ) -> BucketPolicy:
        """Multiplies the current scale by ``factor`` unless the last decrease is too recent."""

    @abc.abstractmethod
    def read(self, key: str) -> BucketPolicy:
        """Returns the row's shared state without changing it."""

    def close(self) -> None:  # noqa: B027 - most backends have nothing to close
        """Releases connections; the store must not be used afterwards."""


@dataclass(slots=True)
class _Row:
    rpm: int = 0
    tpm: int = 0
    scale: float = 1.0
    decreased_at: float = 0.0
    paused_until: float = 0.0
    tat_requests: float = 0.0
    tat_tokens: float = 0.0


class MemoryRateLimitStore(RateLimitStore):
    """The state in this process's memory: shared by every step and thread of one process.

    Examples:
        >>> store = MemoryRateLimitStore()
        >>> store.learn("k", rpm=60, tpm=None).rpm
        60
    """

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    def _row(self, key: str) -> _Row:
        return self._rows.setdefault(key, _Row())

    def _policy(self, row: _Row, now: float) -> BucketPolicy:
        return BucketPolicy(now, row.rpm, row.tpm, row.scale, row.decreased_at, row.paused_until)

    def reserve(self, key: str, requests: int, tokens: int, rates: BucketRates) -> Reservation:
        """Takes units from the buckets (see ``RateLimitStore.reserve``)."""
        with self._lock:
            now = self._clock()
            row = self._row(key)
            if rates.request_spacing_s > 0:
                start = max(row.tat_requests, now - rates.request_burst_s)
                row.tat_requests = start + requests * rates.request_spacing_s
            if rates.token_spacing_s > 0:
                start = max(row.tat_tokens, now - rates.token_burst_s)
                row.tat_tokens = start + tokens * rates.token_spacing_s
            return Reservation(row.tat_requests, row.tat_tokens, self._policy(row, now))

    def learn(self, key: str, *, rpm: int | None, tpm: int | None) -> BucketPolicy:
        """Records limits (see ``RateLimitStore.learn``)."""
        with self._lock:
            row = self._row(key)
            row.rpm = row.rpm if rpm is None else rpm
            row.tpm = row.tpm if tpm is None else tpm
            return self._policy(row, self._clock())

    def pause(self, key: str, seconds: float, *, hard: bool) -> BucketPolicy:
        """Holds the buckets (see ``RateLimitStore.pause``)."""
        with self._lock:
            now = self._clock()
            row = self._row(key)
            until = now + seconds
            row.tat_requests = max(row.tat_requests, until)
            row.tat_tokens = max(row.tat_tokens, until)
            if hard:
                row.paused_until = max(row.paused_until, until)
            return self._policy(row, now)

    def decrease(
        self, key: str, *, factor: float, floor: float, cooldown_s: float, recovery_per_s: float
    ) -> BucketPolicy:
        """Decreases the scale (see ``RateLimitStore.decrease``)."""
        with self._lock:
            now = self._clock()
            row = self._row(key)
            if now - row.decreased_at >= cooldown_s:
                current = self._policy(row, now).scale_at(now, recovery_per_s)
                row.scale = max(floor, current * factor)
                row.decreased_at = now
            return self._policy(row, now)

    def read(self, key: str) -> BucketPolicy:
        """Returns the state (see ``RateLimitStore.read``)."""
        with self._lock:
            return self._policy(self._row(key), self._clock())


StoreKind = Literal["memory", "sqlite", "postgres"]
