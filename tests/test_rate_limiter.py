"""The adaptive rate limiter, through the real engine and SDK, against the simulator over HTTP.

The limiter is never told the limit in these tests: it learns it from the simulator's headers.
Windows are 2 s long (the simulator's and the limiter's) so that several fit in a few seconds.
Each test uses its own API key: limits are shared per key, and the simulator counts per key.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import psycopg2
import pytest

from llm_assets.resources.errors import UserError
from llm_assets.resources.llm import (
    ChatRequest,
    ChatResult,
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
    parse_duration,
    parse_rate_limit_headers,
)
from llm_assets.simulator import SimulatorConfig, SimulatorServer
from llm_assets.simulator.errors import mask_key

WINDOW_S = 2.0
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
LIMITERS: list[AdaptiveRateLimiter] = []


class RecordingLLM(LLMResource):
    """``LLMResource`` that keeps the limiters it builds, so tests can look inside."""

    def make_rate_limiter(self) -> RateLimiter | None:
        limiter = super().make_rate_limiter()
        assert isinstance(limiter, AdaptiveRateLimiter)
        LIMITERS.append(limiter)
        return limiter


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
    }
    settings.update(overrides)
    return RecordingLLM(**settings)


def key_stats(sim: SimulatorServer, api_key: str) -> dict[str, int]:
    return sim.stats()["by_key"][mask_key(api_key)]


def run_and_time(llm: LLMResource, requests: list[ChatRequest]) -> tuple[EngineStats, list[float]]:
    """Runs the requests; returns the stats and each success's send time, from the start."""
    started = time.monotonic()
    sent: list[float] = []

    def on_result(result: ChatResult) -> None:
        if result.ok:
            sent.append(time.monotonic() - result.latency_s - started)

    return llm.run_requests(requests, on_result), sorted(sent)


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

    def test_reservations_queue_at_the_rate(self, store: RateLimitStore) -> None:
        rates = BucketRates(request_spacing_s=0.1, request_burst_s=0.2)
        first = store.reserve("k", 2, 0, rates)
        assert first.requests_at <= first.policy.now + 1e-6  # an idle bucket has a burst of 2
        later = [store.reserve("k", 1, 0, rates) for _ in range(3)]
        waits = [r.requests_at - r.policy.now for r in later]
        assert waits == pytest.approx([0.1, 0.2, 0.3], abs=0.02)

    def test_tokens_and_requests_are_separate_buckets(self, store: RateLimitStore) -> None:
        rates = BucketRates(0.01, 0.01, token_spacing_s=0.001, token_burst_s=0.0)
        reservation = store.reserve("k", 1, 500, rates)
        assert reservation.tokens_at - reservation.policy.now == pytest.approx(0.5, abs=0.02)
        assert reservation.requests_at - reservation.policy.now < 0.02

    def test_limits_are_learned_per_key(self, store: RateLimitStore) -> None:
        assert store.read("a").rpm == 0
        store.learn("a", rpm=60, tpm=None)
        policy = store.learn("a", rpm=None, tpm=1000)
        assert (policy.rpm, policy.tpm) == (60, 1000)
        assert store.read("b").rpm == 0

    def test_pause_holds_everyone_and_only_hard_pauses_mark_it(self, store: RateLimitStore) -> None:
        rates = BucketRates(request_spacing_s=0.01, request_burst_s=0.01)
        assert store.pause("k", 1.0, hard=False).paused_until == 0
        reservation = store.reserve("k", 1, 0, rates)
        assert reservation.requests_at - reservation.policy.now >= 0.99
        policy = store.pause("k", 2.0, hard=True)
        assert policy.paused_until - policy.now == pytest.approx(2.0, abs=0.02)

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


def test_postgres_store_needs_a_url() -> None:
    llm = LLMResource(base_url="http://127.0.0.1:1/v1", api_key="k", rate_limit_store="postgres")
    with pytest.raises(UserError, match="rate_limit_postgres_url"):
        llm.make_rate_limiter()


# Through the engine, against the simulator


def test_learns_limits_from_headers_without_a_first_burst(
    sim: SimulatorServer, api_key: str
) -> None:
    sim.configure(rpm=10, tpm=100_000, window_s=WINDOW_S)
    stats, _ = run_and_time(make_llm(sim.base_url, api_key), chat_requests(12, "learn"))
    assert stats.ok == 12
    # 16 workers, a limit of 10 per window: without a probe the first wave would be rejected.
    assert stats.rate_limited == 0
    assert key_stats(sim, api_key)["max_requests_in_window"] <= 10
    assert LIMITERS[-1].limits == (10, 100_000)


def test_rpm_is_held_over_several_windows(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    requests = chat_requests(180, "rpm")
    stats, sent = run_and_time(make_llm(sim.base_url, api_key), requests)
    window = key_stats(sim, api_key)
    assert stats.ok == len(requests)
    assert window["max_requests_in_window"] <= 60 * 1.05
    assert window["rate_limited"] < 0.01 * len(requests)
    steady = [t for t in sent if t >= WINDOW_S]  # after the first window
    per_window = (len(steady) - 1) / (steady[-1] - steady[0]) * WINDOW_S
    assert per_window >= 0.9 * 60


def test_tpm_is_held(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=0, tpm=3000, window_s=WINDOW_S)
    requests = chat_requests(120, "tpm")  # ~64 tokens each at admission: ~45 per window
    stats, _ = run_and_time(make_llm(sim.base_url, api_key), requests)
    window = key_stats(sim, api_key)
    assert stats.ok == len(requests)
    assert window["max_tokens_in_window"] <= 3000 * 1.05
    assert window["rate_limited"] < 0.01 * len(requests)
    assert LIMITERS[-1].limits == (0, 3000)


def test_backs_off_on_a_429_burst_and_recovers(sim: SimulatorServer, api_key: str) -> None:
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    llm = make_llm(sim.base_url, api_key)
    scales: list[tuple[float, float]] = []
    done = threading.Event()
    limiters_before = len(LIMITERS)

    def neighbour_and_sampler() -> None:
        # Another client on the same key, outside our limiter, fills the window after 1 s.
        client = openai.OpenAI(base_url=sim.base_url, api_key=api_key, max_retries=0)
        started = time.monotonic()
        burst_sent = False
        while not done.is_set():
            if len(LIMITERS) > limiters_before:
                scales.append((time.monotonic() - started, LIMITERS[limiters_before].scale))
            if not burst_sent and time.monotonic() - started > 1.0:
                for request in chat_requests(40, "neighbour"):
                    try:
                        client.chat.completions.create(**request.body)
                    except openai.RateLimitError:
                        break
                burst_sent = True
            time.sleep(0.02)
        client.close()

    sampler = threading.Thread(target=neighbour_and_sampler)
    sampler.start()
    try:
        stats, sent = run_and_time(llm, chat_requests(150, "aimd"))
    finally:
        done.set()
        sampler.join()
    assert stats.ok == 150
    assert stats.rate_limited >= 1
    assert min(scale for _, scale in scales) < 0.75  # one decrease (x0.7), then recovery
    assert scales[-1][1] == 1.0  # recovered by the end of the run
    last_window = [t for t in sent if t >= sent[-1] - WINDOW_S]
    assert len(last_window) >= 0.85 * 60


def test_honours_retry_after_when_the_window_is_already_full(
    sim: SimulatorServer, api_key: str
) -> None:
    sim.configure(rpm=20, tpm=0, window_s=WINDOW_S)
    client = openai.OpenAI(base_url=sim.base_url, api_key=api_key, max_retries=0)
    for request in chat_requests(20, "prefill"):
        client.chat.completions.create(**request.body)
    client.close()
    stats, _ = run_and_time(make_llm(sim.base_url, api_key), chat_requests(10, "after"))
    assert stats.ok == 10
    # The probe meets the full window; its retry-after holds every worker until it frees.
    assert stats.rate_limited <= 1


def _child_run(
    base_url: str, api_key: str, store: dict[str, str], tag: str, count: int, results: Any
) -> None:
    llm = make_llm(base_url, api_key, **store)
    stats = llm.run_requests(chat_requests(count, tag), lambda result: None)
    results.put((stats.ok, stats.rate_limited))


def _run_two_processes(sim: SimulatorServer, api_key: str, store: dict[str, str]) -> None:
    sim.configure(rpm=60, tpm=0, window_s=WINDOW_S)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    children = [
        context.Process(
            target=_child_run, args=(sim.base_url, api_key, store, f"proc{i}", 80, results)
        )
        for i in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(10)
    window = key_stats(sim, api_key)
    assert [ok for ok, _ in outcomes] == [80, 80]
    assert window["max_requests_in_window"] <= 60 * 1.05
    assert window["rate_limited"] < 0.01 * 160


def test_two_processes_share_the_limit_through_sqlite(
    sim: SimulatorServer, api_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "rate_limits.sqlite"
    store = {"rate_limit_store": "sqlite", "rate_limit_sqlite_path": str(path)}
    _run_two_processes(sim, api_key, store)
    assert api_key.encode() not in path.read_bytes()


@pytest.mark.postgres
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
