"""The adaptive rate limiter, through the real engine and SDK, against the simulator over HTTP.

The limiter is never told the provider's limit: it learns it from the simulator's headers (two
tests also set a lower cap, ``rpm_limit``, which only the limiter enforces).
Windows are 2 s long (the simulator's and the limiter's) so that several fit in a few seconds.
Each test uses its own API key: limits are shared per key, and the simulator counts per key.

The simulator refuses whatever is over its limit, so its own counts cannot show that a limit
was held. The tests watch the client side instead: ``RecordingLimiter`` notes when the limiter
lets each attempt go, and the tests assert behaviour with margins that hold on a loaded 2-core
machine: never more than the limit (+ ``LOAD_SLACK``) let through in any window, few 429s, and
progress. How close to the limit the limiter runs is a throughput figure: ``make bench``
(bench/bench_rate_limit.py) measures it, the tests do not.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import openai
import psycopg2
import pytest

from llm_assets.resources.errors import UserError
from llm_assets.resources.llm import (
    ChatRequest,
    EngineStats,
    LLMResource,
    estimate_prompt_tokens,
)
from llm_assets.resources.ratelimit import (
    AdaptiveRateLimiter,
    BucketRates,
    MemoryRateLimitStore,
    RateLimiter,
    RateLimitStore,
    SQLiteRateLimitStore,
    limit_key,
    open_rate_limit_store,
    parse_duration,
    parse_rate_limit_headers,
)
from llm_assets.simulator import SimulatorConfig, SimulatorServer
from llm_assets.simulator.errors import mask_key

WINDOW_S = 2.0
# A loaded machine wakes sleeping requests late and several at once, so a window may see a few
# more releases than the limiter scheduled in it: up to this fraction of the limit (0.3 s of
# traffic here; 0.1 s was the most seen under load). Wrong pacing shows above it: without
# pacing 1.5x the limit went through a window, with pacing 25% too fast 1.23x a cap.
LOAD_SLACK = 0.15
# Two processes interleave less precisely than one: each converts the store's clock to its own
# through a round trip and wakes on its own event loop (+17% was seen under load). Not sharing,
# they would let through twice the limit, so the check sits halfway.
SHARED_SLACK = 0.5
# 429s the provider may answer, as a fraction of the requests: jitter makes a few; a limiter
# that does not pace or share draws far more (a naive gather draws ~26% in the benchmark).
MAX_429_FRACTION = 0.05
# Timeout of a test driving the engine against the simulator: they take 3-10 s, more under
# load; a hung limiter should fail well before the suite's 300 s default.
ENGINE_TIMEOUT_S = 90
CHILD_START_TIMEOUT_S = 120  # starting the fork server (it imports dagster) is slow under load
LIMITERS: list[RecordingLimiter] = []


class RecordingLimiter:
    """The resource's own limiter, noting when it lets each attempt go and when answers came.

    Times are ``time.monotonic()``, one clock for every process of the host (Linux
    ``CLOCK_MONOTONIC``), so releases recorded in several processes can be merged.
    """

    def __init__(self, inner: AdaptiveRateLimiter) -> None:
        self.inner = inner
        self.released: list[tuple[float, int]] = []  # (time, estimated tokens) per attempt
        self.first_answer_at: float | None = None

    @property
    def limits(self) -> tuple[int, int]:
        return self.inner.limits

    @property
    def scale(self) -> float:
        return self.inner.scale

    async def acquire(self, tokens: int) -> None:
        await self.inner.acquire(tokens)
        self.released.append((time.monotonic(), tokens))

    def observe(self, headers: Mapping[str, str], *, used_tokens: int, est_tokens: int) -> None:
        if self.first_answer_at is None:
            self.first_answer_at = time.monotonic()
        self.inner.observe(headers, used_tokens=used_tokens, est_tokens=est_tokens)

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        if self.first_answer_at is None:
            self.first_answer_at = time.monotonic()
        self.inner.on_rate_limited(retry_after_s)


class RecordingLLM(LLMResource):
    """``LLMResource`` whose limiters record what they let through, so tests can look inside."""

    def _make_limiter(self, api_key: str) -> RateLimiter:
        limiter = super()._make_limiter(api_key)
        assert isinstance(limiter, AdaptiveRateLimiter)
        recording = RecordingLimiter(limiter)
        LIMITERS.append(recording)
        return recording


def most_in_any_window(
    released: Sequence[tuple[float, int]], window_s: float = WINDOW_S, *, tokens: bool = False
) -> int:
    """The most attempts (or estimated tokens) let through in any window of ``window_s``."""
    events = sorted(released)
    most = inside = first = 0
    for when, weight in events:
        inside += weight if tokens else 1
        while events[first][0] <= when - window_s:
            inside -= events[first][1] if tokens else 1
            first += 1
        most = max(most, inside)
    return most


def per_window(
    released: Sequence[tuple[float, int]], window_s: float = WINDOW_S, *, tokens: bool = False
) -> float:
    """Attempts (or estimated tokens) let through per window, from the first to the last."""
    events = sorted(released)
    amount = sum(weight if tokens else 1 for _, weight in events[:-1])
    return amount / (events[-1][0] - events[0][0]) * window_s


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    # Its own server: these tests change window_s, which the shared fixture does not reset.
    with SimulatorServer(SimulatorConfig(window_s=WINDOW_S)) as server:
        yield server


@pytest.fixture
def api_key() -> str:
    return f"sk-rl-{uuid.uuid4().hex[:12]}"


def chat_requests(count: int, tag: str, max_tokens: int = 50) -> list[ChatRequest]:
    requests = []
    for i in range(count):
        messages = [{"role": "user", "content": f"{tag} review {i}: battery lasts two days"}]
        body = {"model": "sim-small", "messages": messages, "max_tokens": max_tokens}
        requests.append(ChatRequest(f"{tag}-{i}", body, estimate_prompt_tokens(messages)))
    return requests


def make_llm(base_url: str, api_key: str, **overrides: Any) -> LLMResource:
    settings: dict[str, Any] = {
        "base_url": base_url,
        "api_key": api_key,
        "model": "sim-small",
        "max_concurrency": 16,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 1.0,
        "rate_limit_window_s": WINDOW_S,
        "rate_limit_model": "window",  # the simulator's default (buckets: tests/test_pacing.py)
    }
    settings.update(overrides)
    return RecordingLLM(**settings)


def key_stats(sim: SimulatorServer, api_key: str) -> dict[str, int]:
    return sim.stats()["by_key"][mask_key(api_key)]


def run_recorded(
    llm: LLMResource, requests: list[ChatRequest]
) -> tuple[EngineStats, RecordingLimiter]:
    """Runs the requests in a client session of their own (as outside a Dagster run).

    Returns:
        The engine's stats and the limiter that paced the requests.
    """
    before = len(LIMITERS)
    stats = llm.run_requests(requests, lambda result: None)
    assert len(LIMITERS) == before + 1
    return stats, LIMITERS[-1]


# Headers


def test_parses_openai_rate_limit_headers() -> None:
    info = parse_rate_limit_headers(
        {
            "X-RateLimit-Limit-Requests": "500",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m30.5s",
            "x-ratelimit-reset-tokens": "250ms",
        }
    )
    assert (info.limit_requests, info.limit_tokens, info.remaining_requests) == (500, 200000, 0)
    assert (info.reset_requests_s, info.reset_tokens_s) == (90.5, 0.25)
    assert not parse_rate_limit_headers({"content-type": "application/json"}).has_limits
    assert parse_duration("2h") == 7200.0 and parse_duration("1x") is None


# Store contract: every backend passes the same tests.


class RateLimitStoreContract:
    @pytest.fixture
    def store(self) -> Iterator[RateLimitStore]:
        raise NotImplementedError

    # Spacings are seconds long, so the time the calls themselves take on a loaded machine
    # (CLOCK_SLACK_S at most) cannot hide a wrong answer. Values one statement computes from
    # one reading of the clock are compared exactly (up to float rounding).
    CLOCK_SLACK_S = 2.0
    EXACT = 1e-3

    def test_reservations_queue_at_the_rate(self, store: RateLimitStore) -> None:
        rates = BucketRates(request_spacing_s=10.0, request_burst_s=20.0)
        first = store.reserve("k", 2, 0, rates)
        # An idle bucket lets its burst (2) through at once.
        assert first.requests_at == pytest.approx(first.policy.now, abs=self.EXACT)
        later = [store.reserve("k", 1, 0, rates) for _ in range(3)]
        # Each later request queues one spacing behind the one before...
        queued = [r.requests_at - first.requests_at for r in later]
        assert queued == pytest.approx([10.0, 20.0, 30.0], abs=self.EXACT)
        # ...which, seen from each call, is that long a wait, less the time the calls took.
        waits = [r.requests_at - r.policy.now for r in later]
        assert waits == pytest.approx([10.0, 20.0, 30.0], abs=self.CLOCK_SLACK_S)

    def test_tokens_and_requests_are_separate_buckets(self, store: RateLimitStore) -> None:
        rates = BucketRates(1.0, 1.0, token_spacing_s=0.1, token_burst_s=0.0)
        reservation = store.reserve("k", 1, 500, rates)
        now = reservation.policy.now
        assert reservation.tokens_at - now == pytest.approx(50.0, abs=self.EXACT)
        assert reservation.requests_at - now == pytest.approx(0.0, abs=self.EXACT)

    def test_limits_are_learned_per_key(self, store: RateLimitStore) -> None:
        assert store.read("a").rpm == 0
        store.learn("a", rpm=60, tpm=None)
        policy = store.learn("a", rpm=None, tpm=1000)
        assert (policy.rpm, policy.tpm) == (60, 1000)
        assert store.read("b").rpm == 0

    def test_pause_holds_everyone_and_only_hard_pauses_mark_it(self, store: RateLimitStore) -> None:
        rates = BucketRates(request_spacing_s=0.01, request_burst_s=0.01)
        soft = store.pause("k", 60.0, hard=False)
        assert soft.paused_until == 0
        reservation = store.reserve("k", 1, 0, rates)
        # The next request goes one spacing after the pause, however long the calls took.
        assert reservation.requests_at == pytest.approx(soft.now + 60.01, abs=self.EXACT)
        assert reservation.requests_at - reservation.policy.now >= 60.0 - self.CLOCK_SLACK_S
        policy = store.pause("k", 120.0, hard=True)
        assert policy.paused_until - policy.now == pytest.approx(120.0, abs=self.EXACT)

    def test_decrease_once_per_cooldown_then_recover(self, store: RateLimitStore) -> None:
        settings = {"factor": 0.5, "floor": 0.1, "cooldown_s": 60.0, "recovery_per_s": 0.25}
        first = store.decrease("k", **settings)
        assert first.scale == 0.5
        assert store.decrease("k", **settings).scale == 0.5  # same burst, one event
        assert first.scale_at(first.decreased_at + 1.0, 0.25) == pytest.approx(0.75)
        assert first.scale_at(first.decreased_at + 10.0, 0.25) == 1.0


class TestMemoryStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self) -> Iterator[RateLimitStore]:
        yield MemoryRateLimitStore()


class TestSQLiteStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[RateLimitStore]:
        store = SQLiteRateLimitStore(tmp_path / "limits.sqlite")
        yield store
        store.close()


def _open_at_once(path: Path, openers: int) -> list[BaseException]:
    """Opens the store on ``path`` from ``openers`` threads released together."""
    start = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            SQLiteRateLimitStore(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.timeout(120)
def test_steps_opening_a_new_sqlite_store_at_once_all_get_it(tmp_path: Path) -> None:
    # The steps of a run start together and open the same new file: switching it to WAL can
    # fail at once with "database is locked" for all but one of them, whatever the timeout.
    for trial in range(60):
        errors = _open_at_once(tmp_path / f"limits-{trial}.sqlite", openers=8)
        assert not errors, f"trial {trial}: {errors[0]!r}"


@pytest.mark.postgres
class TestPostgresStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self, postgres_url: str) -> Iterator[RateLimitStore]:
        from llm_assets.resources.ratelimit import PostgresRateLimitStore

        store = PostgresRateLimitStore(postgres_url)
        yield store
        store.close()


# The limiter on its own


def test_retry_after_pauses_every_step_sharing_the_key() -> None:
    store, key = MemoryRateLimitStore(), limit_key("http://x/v1", "sk-shared")

    async def scenario() -> float:
        first = AdaptiveRateLimiter(store, key, window_s=1.0, rpm_limit=6000)
        second = AdaptiveRateLimiter(store, key, window_s=1.0, rpm_limit=6000)
        await first.acquire(10)
        await second.acquire(10)
        first.on_rate_limited(0.5)
        started = time.monotonic()
        await second.acquire(10)
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 0.45


def test_a_failing_store_falls_back_to_pacing_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenStore(MemoryRateLimitStore):
        blocking = True
        errors = (sqlite3.OperationalError,)

        def reserve(self, key: str, requests: int, tokens: int, rates: BucketRates) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

    limiter = AdaptiveRateLimiter(BrokenStore(), "k", window_s=1.0, rpm_limit=600)

    async def scenario() -> None:
        for _ in range(5):
            await limiter.acquire(10)

    with caplog.at_level(logging.WARNING, logger="llm_assets.resources.ratelimit.limiter"):
        asyncio.run(scenario())
    assert "paces on its own" in caplog.text and "disk I/O error" in caplog.text


def test_postgres_store_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    llm = LLMResource(base_url="http://127.0.0.1:1/v1", api_key="k", rate_limit_store="postgres")
    # Refused before a client opens or anything is sent.
    with pytest.raises(UserError, match="rate_limit_postgres_url"):
        llm.run_requests([], lambda result: None)


# Through the engine, against the simulator


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_learns_limits_from_headers_without_a_first_burst(
    sim: SimulatorServer, api_key: str
) -> None:
    sim.configure(rpm=10, tpm=100_000, window_s=WINDOW_S)
    stats, limiter = run_recorded(make_llm(sim.base_url, api_key), chat_requests(12, "learn"))
    assert stats.ok == 12
    assert limiter.limits == (10, 100_000)
    # 16 workers, a limit of 10 per window: without a probe the first wave would be rejected.
    # One probe goes until the first answer (one more per second if that answer is slow).
    assert limiter.first_answer_at is not None
    probes = [t for t, _ in limiter.released if t < limiter.first_answer_at]
    assert 1 <= len(probes) <= 2, f"{len(probes)} requests went before the first answer"
    assert stats.rate_limited == 0
    assert most_in_any_window(limiter.released) <= 10 * (1 + LOAD_SLACK)


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_rpm_is_held_over_several_windows(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    requests = chat_requests(180, "rpm")
    stats, limiter = run_recorded(make_llm(sim.base_url, api_key), requests)
    assert stats.ok == len(requests)
    assert limiter.limits == (60, 0)
    assert most_in_any_window(limiter.released) <= 60 * (1 + LOAD_SLACK)
    assert key_stats(sim, api_key)["rate_limited"] <= MAX_429_FRACTION * len(requests)
    # Progress, not precision: at least half the limit (the benchmark measures how close).
    assert per_window(limiter.released) >= 0.5 * 60


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_a_cap_below_the_providers_limit_is_held_by_pacing_alone(
    sim: SimulatorServer, api_key: str
) -> None:
    # Against the provider's own limit its 429s and window-full headers correct a limiter
    # that paces too fast. Under a cap of 30 where the provider allows 60, nothing does.
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    llm = make_llm(sim.base_url, api_key, rpm_limit=30)
    stats, limiter = run_recorded(llm, chat_requests(75, "cap"))
    assert stats.ok == 75
    assert limiter.limits == (30, 0)
    assert most_in_any_window(limiter.released) <= 30 * (1 + LOAD_SLACK)
    assert key_stats(sim, api_key)["rate_limited"] == 0
    assert per_window(limiter.released) >= 0.5 * 30


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_tpm_is_held(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=0, tpm=3000, window_s=WINDOW_S)
    requests = chat_requests(120, "tpm")  # ~64 tokens each at admission: ~45 per window
    stats, limiter = run_recorded(make_llm(sim.base_url, api_key), requests)
    assert stats.ok == len(requests)
    assert limiter.limits == (0, 3000)
    assert most_in_any_window(limiter.released, tokens=True) <= 3000 * (1 + LOAD_SLACK)
    assert key_stats(sim, api_key)["rate_limited"] <= MAX_429_FRACTION * len(requests)
    assert per_window(limiter.released, tokens=True) >= 0.5 * 3000


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_backs_off_on_a_429_burst_and_recovers(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    llm = make_llm(sim.base_url, api_key)
    scales: list[float] = []
    done = threading.Event()
    limiters_before = len(LIMITERS)

    def neighbour() -> None:
        # Another client on the same key, outside our limiter, fills the window after 1 s.
        if done.wait(1.0):
            return
        with openai.OpenAI(base_url=sim.base_url, api_key=api_key, max_retries=0) as client:
            for request in chat_requests(40, "neighbour"):
                try:
                    client.chat.completions.create(**request.body)
                except openai.RateLimitError:
                    break

    def sampler() -> None:
        while not done.wait(0.02):
            if len(LIMITERS) > limiters_before:
                scales.append(LIMITERS[limiters_before].scale)

    threads = [threading.Thread(target=neighbour), threading.Thread(target=sampler)]
    for thread in threads:
        thread.start()
    try:
        stats, limiter = run_recorded(llm, chat_requests(150, "aimd"))
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert stats.ok == 150
    assert stats.rate_limited >= 1
    # The 429s cut the key's shared scale (x0.7, at most once per cooldown)...
    policy = open_rate_limit_store("memory").read(limit_key(sim.base_url, api_key))
    assert policy.decreased_at > 0 and policy.scale <= 0.7 + 1e-9
    # ...and it climbed back to the full rate while the run went on.
    dipped = next((i for i, scale in enumerate(scales) if scale < 1.0), None)
    assert dipped is not None, "the sampler never saw the scale drop"
    assert max(scales[dipped:]) == 1.0
    # Progress: the neighbour's burst and its retry-after pause cost about a window.
    assert per_window(limiter.released) >= 60 / 3


@pytest.mark.timeout(ENGINE_TIMEOUT_S)
def test_honours_retry_after_when_the_window_is_already_full(
    sim: SimulatorServer, api_key: str
) -> None:
    sim.configure(rpm=20, tpm=0, window_s=WINDOW_S)
    client = openai.OpenAI(base_url=sim.base_url, api_key=api_key, max_retries=0)
    for request in chat_requests(20, "prefill"):
        client.chat.completions.create(**request.body)
    client.close()
    stats, _ = run_recorded(make_llm(sim.base_url, api_key), chat_requests(10, "after"))
    assert stats.ok == 10
    # The probe meets the full window; its retry-after holds every worker until it frees.
    assert stats.rate_limited <= 1


def _child_run(
    base_url: str,
    api_key: str,
    store: dict[str, str],
    tag: str,
    count: int,
    start_together: Any,
    results: Any,
) -> None:
    """Runs in a child process: a second step on another process, sharing the key's limit."""
    llm = make_llm(base_url, api_key, **store)
    start_together.wait(timeout=CHILD_START_TIMEOUT_S)  # both import first, then send at once
    stats, limiter = run_recorded(llm, chat_requests(count, tag))
    results.put((stats.ok, limiter.released))


def _next_result(results: Any, children: list[Any], timeout_s: float) -> Any:
    """The next child's result; fails at once if a child died instead of waiting it out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            died = [child.exitcode for child in children if child.exitcode not in (None, 0)]
            if died:
                pytest.fail(f"a child process died with exit code {died}; its stderr is above")
            if time.monotonic() > deadline:
                pytest.fail(f"the child processes sent no result within {timeout_s:.0f} s")


def _run_two_processes(sim: SimulatorServer, api_key: str, store: dict[str, Any]) -> None:
    # The provider allows 60 per window, the resource caps the key at 30 (rpm_limit). The
    # provider never pushes back, so only the shared store can keep the two processes under
    # the cap together: each pacing alone would send 30 per window, 60 together. (Against the
    # provider's own limit, its 429s and window-full headers alone come close to holding it.)
    cap, per_child = 30, 60
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    store = {**store, "rpm_limit": cap}
    # Forked from a server that imported this module once: a spawned child would import
    # Dagster, openai and the library again (about 3 CPU-s each on this machine).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    start_together, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(
            target=_child_run,
            args=(sim.base_url, api_key, store, f"proc{i}", per_child, start_together, results),
        )
        for i in range(2)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [
            _next_result(results, children, CHILD_START_TIMEOUT_S + ENGINE_TIMEOUT_S)
            for _ in children
        ]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    assert [ok for ok, _ in outcomes] == [per_child, per_child]
    first, second = (released for _, released in outcomes)
    # The processes sent side by side (so the cap was shared, not taken in turns)...
    overlap = min(max(first)[0], max(second)[0]) - max(min(first)[0], min(second)[0])
    assert overlap >= WINDOW_S
    # ...together never let much more than the one cap of the key through (not twice it)...
    assert most_in_any_window(first + second) <= cap * (1 + SHARED_SLACK)
    assert key_stats(sim, api_key)["rate_limited"] <= MAX_429_FRACTION * 2 * per_child
    # ...and made progress.
    assert per_window(first + second) >= 0.5 * cap


@pytest.mark.timeout(CHILD_START_TIMEOUT_S + ENGINE_TIMEOUT_S)
def test_two_processes_share_the_limit_through_sqlite(
    sim: SimulatorServer, api_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "rate_limits.sqlite"
    store = {"rate_limit_store": "sqlite", "rate_limit_sqlite_path": str(path)}
    _run_two_processes(sim, api_key, store)
    assert api_key.encode() not in path.read_bytes()


@pytest.mark.postgres
@pytest.mark.timeout(CHILD_START_TIMEOUT_S + ENGINE_TIMEOUT_S)
def test_two_processes_share_the_limit_through_postgres(
    sim: SimulatorServer, api_key: str, postgres_url: str
) -> None:
    store = {"rate_limit_store": "postgres", "rate_limit_postgres_url": postgres_url}
    _run_two_processes(sim, api_key, store)
    dsn = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT limit_key, rpm FROM llm_assets.rate_buckets")
        rows = cur.fetchall()
    conn.close()
    assert rows == [(limit_key(sim.base_url, api_key), 60)]
