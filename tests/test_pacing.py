"""The limiter's pacing on a virtual clock, against the simulator's own limit logic.

No wall clock and no HTTP: ``VirtualTime`` runs the limiter's waits and the provider's answers
as a discrete-event simulation, so every figure here is deterministic and exact. The provider
is the simulator's ``BucketLimiter`` (continuous buckets refilled at limit/60 per second, one
second of burst), its ``CombinedLimiter`` (that bucket and a whole-minute window at once, as
OpenAI enforces a per-minute limit) or its sliding-window ``RateLimiter``. Requests reach it
after a random network delay (so they arrive late and out of order, as on a busy host) and
are answered after a latency; answers feed ``observe`` / ``on_rate_limited`` as the engine
does, and a rejected request is sent again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from llm_assets.resources.llm.retries import RetryPolicy
from llm_assets.resources.ratelimit import AdaptiveRateLimiter, MemoryRateLimitStore
from llm_assets.simulator.limits import BucketLimiter, CombinedLimiter, Decision, RateLimiter

RPM = 600  # per minute: 10 requests a second
RATE = RPM / 60
COST = 60  # tokens per request; the token limit is set so that requests bind
TPM = 100_000
LATENCY_S = 0.3


class VirtualTime:
    """A clock and ``sleep`` for the limiter, plus timed events, advanced only when idle."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, Any]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken = asyncio.get_running_loop().create_future()
        self.call_at(self.now + max(0.0, seconds), woken)
        await woken

    def call_at(self, when: float, event: Any) -> None:
        """``event`` is a future to wake or a function to call at ``when``."""
        heapq.heappush(self._queue, (when, next(self._order), event))

    async def run(self, *work: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.create_task(item) for item in work]
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every task that can run reach its next wait
                await asyncio.sleep(0)
            if all(task.done() for task in tasks) or not self._queue:
                break
            when, _, event = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if isinstance(event, asyncio.Future):
                event.set_result(None)
            else:
                event()
        for task in tasks:
            task.result()  # re-raise a failure; a task still pending here is a deadlock
        assert all(task.done() for task in tasks), "the simulation stalled"


Admit = Callable[[str, int, float], Decision]


def bucket_provider(rpm: int = RPM, tpm: int = TPM) -> Admit:
    limiter = BucketLimiter()
    return lambda key, cost, now: limiter.admit(
        key, cost, now, rpm=rpm, tpm=tpm, window_s=60.0, burst_s=1.0
    )


def combined_provider(rpm: int = RPM, tpm: int = TPM) -> Admit:
    limiter = CombinedLimiter()
    return lambda key, cost, now: limiter.admit(
        key, cost, now, rpm=rpm, tpm=tpm, window_s=60.0, burst_s=1.0
    )


def window_provider(rpm: int, window_s: float) -> Admit:
    limiter = RateLimiter()
    return lambda key, cost, now: limiter.admit(key, cost, now, rpm=rpm, tpm=0, window_s=window_s)


@dataclass
class Client:
    """One process's step: a dispatcher that sends ``rows`` requests through ``limiter``."""

    limiter: AdaptiveRateLimiter
    rows: int
    start_at: float = 0.0
    network_s: float = 0.2
    """Requests reach the provider up to this late (uniformly), so out of order and bunched."""
    sent: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    rejected: int = 0


async def drive(
    vt: VirtualTime, client: Client, provider: Admit, rng: random.Random, key: str = "k"
) -> None:
    await vt.sleep(client.start_at)
    waiting: deque[int] = deque(range(client.rows))
    done = 0

    def answer(decision: Decision, row: int) -> None:
        nonlocal done
        if decision.admitted:
            client.limiter.observe(decision.headers, used_tokens=COST, est_tokens=COST)
            client.answered.append(vt.now)
            done += 1
        else:
            client.rejected += 1
            client.limiter.on_rate_limited(decision.retry_after_s)
            waiting.appendleft(row)

    def arrive(row: int) -> None:
        decision = provider(key, COST, vt.now)
        vt.call_at(vt.now + LATENCY_S * rng.uniform(0.5, 1.5), lambda: answer(decision, row))

    while done < client.rows:
        if not waiting:
            await vt.sleep(0.01)
            continue
        row = waiting.popleft()
        await client.limiter.acquire(COST)
        client.sent.append(vt.now)
        vt.call_at(vt.now + rng.uniform(0.0, client.network_s), lambda row=row: arrive(row))


def make_limiter(
    vt: VirtualTime, store: MemoryRateLimitStore, **options: Any
) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(store, "k", clock=vt.clock, sleep=vt.sleep, **options)


def most_in(times: list[float], span_s: float) -> int:
    """The most events in any interval of ``span_s``."""
    times = sorted(times)
    first = most = 0
    for last, when in enumerate(times):
        while times[first] <= when - span_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def fraction_of_limit(answered: list[float], started: float = 0.0) -> float:
    """Answers per second from the start to the last answer, over the refill rate."""
    return len(answered) / (RATE * (max(answered) - started))


def new_clients(count: int, rows: int, **options: Any) -> tuple[VirtualTime, list[Client]]:
    vt = VirtualTime()
    store = MemoryRateLimitStore(clock=vt.clock)
    return vt, [Client(make_limiter(vt, store, **options), rows) for _ in range(count)]


def run(vt: VirtualTime, clients: list[Client], provider: Admit, seed: int = 0) -> None:
    rng = random.Random(seed)
    asyncio.run(vt.run(*(drive(vt, client, provider, rng) for client in clients)))


# Against the provider's bucket


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_step_runs_at_the_refill_rate_and_is_never_rejected(seed: int) -> None:
    vt, (client,) = new_clients(1, 600)
    run(vt, [client], bucket_provider(), seed)
    assert client.rejected == 0
    assert client.limiter.limits == (RPM, TPM)  # learned from the headers, never told
    # One probe until the first answer, then 99% of the refill rate (every minute keeps room
    # for the limiter's burst and for late arrivals): 600 rows in about 61.5 s.
    assert len([t for t in client.sent if t < LATENCY_S / 2]) == 1
    assert fraction_of_limit(client.answered) >= 0.97
    # Evenly: no second sees more than the rate plus the limiter's 0.2 s of burst.
    assert most_in(client.sent, 1.0) <= RATE + RATE / 5 + 1


def test_two_processes_share_the_rate_through_the_store() -> None:
    vt, clients = new_clients(2, 300)
    clients[1].start_at = 5.0  # the second step starts later and finds the limit learned
    run(vt, clients, bucket_provider())
    assert [c.rejected for c in clients] == [0, 0]
    # No probe for the second: its first requests go at the shared pace at once.
    second = clients[1].sent
    assert second[0] == pytest.approx(5.0, abs=0.2) and second[2] - second[0] < 1.0
    answered = clients[0].answered + clients[1].answered
    assert fraction_of_limit(answered) >= 0.97
    assert most_in(clients[0].sent + clients[1].sent, 1.0) <= RATE + RATE / 5 + 2


def test_a_spent_bucket_holds_for_one_refill_not_its_whole_reset() -> None:
    vt, (client,) = new_clients(1, 0)
    limiter = client.limiter
    spent = {
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",  # until the bucket is full again
    }

    async def scenario() -> float:
        limiter.observe(spent, used_tokens=COST, est_tokens=COST)
        await limiter.acquire(COST)
        return vt.now

    asyncio.run(vt.run(scenario()))
    # One request's refill at 600/min is 0.1 s; waiting the whole reset would cost 1 s. Then
    # the request takes its turn, one spacing (just over 0.1 s) behind the hold.
    assert vt.now == pytest.approx(0.1 + 1 / RATE, abs=0.002)


def test_a_retry_after_pauses_every_caller_of_the_key() -> None:
    vt, (first, second) = new_clients(2, 0, rpm_limit=RPM)
    times: list[float] = []

    async def scenario() -> None:
        await first.limiter.acquire(COST)
        first.limiter.on_rate_limited(2.0)
        await second.limiter.acquire(COST)
        times.append(vt.now)

    asyncio.run(vt.run(scenario()))
    # Not before the pause ends; then in its turn behind the first's request.
    assert 2.0 <= times[0] <= 2.0 + 2.1 / RATE


# Against a sliding window


def test_window_model_never_overfills_a_sliding_window() -> None:
    window_s = 5.0
    vt, (client,) = new_clients(1, 400, model="window", window_s=window_s)
    # 50 per 5 s: 10 a second. A window has no burst to absorb lateness: the 3% margin of
    # the window model covers up to 0.15 s of bunching here, so requests are up to 0.05 s late.
    client.network_s = 0.05
    run(vt, [client], window_provider(50, window_s))
    assert client.rejected == 0
    assert client.limiter.limits == (50, 0)
    assert fraction_of_limit(client.answered) >= 0.9


def test_bucket_model_keeps_every_window_under_the_limit() -> None:
    # The bucket model leaves room in each window for its burst and for late arrivals, so a
    # server that counts only a window does not reject it either; the window model adds a
    # slow start for servers far from the caller.
    window_s = 5.0
    vt, (client,) = new_clients(1, 400, window_s=window_s)
    client.network_s = 0.05
    run(vt, [client], window_provider(50, window_s))
    assert client.rejected == 0
    assert most_in(client.sent, window_s) <= 50
    assert fraction_of_limit(client.answered) >= 0.85


# Against the bucket and the whole-minute window at once


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_processes_hold_the_minute_as_well_as_the_second(seed: int) -> None:
    # A burst followed by the full refill rate would pass the bucket and overfill the minute
    # some 60 s later, where each 429 also cuts the shared rate: 0.95 of the limit.
    vt, clients = new_clients(2, 600)
    run(vt, clients, combined_provider(), seed)
    assert [c.rejected for c in clients] == [0, 0]
    sent = clients[0].sent + clients[1].sent
    assert most_in(sent, 60.0) <= RPM - 1  # room left for the next request to be late
    assert fraction_of_limit(clients[0].answered + clients[1].answered) >= 0.98


def test_one_long_step_holds_the_minute_after_its_first_burst() -> None:
    vt, (client,) = new_clients(1, 1500)
    client.network_s = 0.05
    run(vt, [client], combined_provider())
    assert client.rejected == 0
    assert fraction_of_limit(client.answered) >= 0.98


# Retry delays


def test_isolated_failures_retry_at_once_and_overload_backs_off() -> None:
    now = [0.0]
    policy = RetryPolicy(0.5, 30.0, random.Random(0), clock=lambda: now[0])
    for ok in [True] * 8 + [False] + [True] * 4:  # one failure among successes
        policy.record(ok=ok)
    assert not policy.overloaded
    assert policy.after_failure(1, None) <= 0.1 and policy.hold_until == 0.0
    # The 6th failure among the last 20 with successes between is still isolated...
    for _ in range(2):
        policy.record(ok=False)
        policy.record(ok=True)
    assert not policy.overloaded
    # ...a run of failures that dominates the recent attempts is overload.
    for _ in range(10):
        policy.record(ok=False)
    assert policy.overloaded
    delay = policy.after_failure(4, None)
    assert 2.0 <= delay <= 4.0 and policy.hold_until == pytest.approx(delay)
    # A retry-after is honoured even when the failure is isolated.
    calm = RetryPolicy(0.5, 30.0, random.Random(0), clock=lambda: now[0])
    calm.record(ok=False)
    assert calm.after_failure(1, 1.5) == 1.5 and calm.hold_until == 1.5
