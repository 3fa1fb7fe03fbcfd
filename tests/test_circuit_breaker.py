"""A dead or failing endpoint stops the step with one clear error; a bad row stays a bad row."""

from __future__ import annotations

import pickle
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets import llm_asset
from llm_assets.resources.errors import EndpointUnreachable
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.simulator import SimulatorServer
from tests.conftest import TEST_API_KEY, make_resources
from tests.test_llm_asset import make_task, source_asset

# Generous bounds for a loaded 2-core machine; each case takes well under a second idle.
QUICKLY_S = 30.0
FAST_RETRIES: dict[str, Any] = {"retry_backoff_s": 0.01, "retry_backoff_max_s": 0.05}


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def chat_requests(n: int, tag: str = "row") -> list[ChatRequest]:
    return [
        ChatRequest(
            key=f"{tag}-{i}",
            body={"model": "sim-small", "messages": [{"role": "user", "content": f"{tag} {i}"}]},
            est_prompt_tokens=5,
        )
        for i in range(n)
    ]


def rows(n: int, marker: str = "") -> list[dict[str, Any]]:
    return [{"id": i, "text": f"review {i} {marker}".strip()} for i in range(n)]


def step_error(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def dead_resources(url: str, tmp_path: Path, **llm: Any) -> dict[str, Any]:
    return {
        "llm": LLMResource(base_url=url, api_key=TEST_API_KEY, model="sim-small", **llm),
        "ledger": ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite")),
        "io_manager": ParquetIOManager(base_dir=str(tmp_path / "data")),
    }


# The engine, through LLMResource


def test_dead_endpoint_raises_one_clear_error_quickly(dead_url: str) -> None:
    llm = LLMResource(base_url=dead_url, api_key=TEST_API_KEY, **FAST_RETRIES)
    results: list[tuple[float, ChatResult]] = []
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as raised:
        llm.run_requests(chat_requests(40), lambda r: results.append((time.monotonic(), r)))
    elapsed = time.monotonic() - started

    assert elapsed < QUICKLY_S
    message = str(raised.value)
    assert f"the LLM endpoint {dead_url} cannot be reached: connection refused" in message
    assert "Errno 111" in message and "none succeeded" in message
    assert "LLMResource.base_url" in message and TEST_API_KEY not in message
    assert raised.value.status_code is None and raised.value.code == "connection refused"
    # Only the first wave of workers ever sent anything; each reported a failed result.
    assert 0 < len(results) <= llm.max_concurrency
    assert not any(r.ok for _, r in results)
    assert sum(r.attempts for _, r in results) <= llm.max_concurrency * (llm.max_retries + 1)
    # Workers waiting for a retry (or for the rate limiter's next probe, one a second while
    # nothing answers) stop at once when the breaker opens rather than one by one.
    cut_short = [t for t, r in results if r.error_class == "endpoint_unreachable"]
    assert cut_short and max(t for t, _ in results) - min(cut_short) < 5.0
    again = pickle.loads(pickle.dumps(raised.value))
    assert isinstance(again, EndpointUnreachable) and str(again) == message


def test_one_request_to_a_dead_endpoint_also_raises(dead_url: str) -> None:
    # 7 attempts never reach the threshold of 8, but every request gave up and none succeeded.
    llm = LLMResource(base_url=dead_url, api_key=TEST_API_KEY, **FAST_RETRIES)
    with pytest.raises(EndpointUnreachable, match="7 attempts in a row failed"):
        llm.run_requests(chat_requests(1), lambda result: None)


def test_endpoint_that_comes_back_within_the_retry_schedule_loses_nothing() -> None:
    server = SimulatorServer().start()
    url = server.base_url
    server.stop()  # a restart: refused for a moment, then back on the same port
    restarter = threading.Timer(0.3, server.start)
    llm = LLMResource(
        base_url=url, api_key=TEST_API_KEY, retry_backoff_s=0.3, retry_backoff_max_s=3.0
    )
    results: list[ChatResult] = []
    # The client opens first, as before a step, so the 0.3 s outage falls on the requests.
    with dg.build_resources({"llm": llm}) as opened:
        restarter.start()
        try:
            stats = opened.llm.run_requests(chat_requests(40), results.append)
            assert stats.ok == 40 and stats.retries > 0
            assert server.stats()["chat_completions"] == 40
        finally:
            restarter.join()
            server.stop()


def test_every_request_failing_a_few_times_does_not_open_the_breaker(
    simulator: SimulatorServer,
) -> None:
    # 40 requests x 3 failures each is far past the threshold, but no request runs out of
    # retries, so this is a blip, not a dead endpoint.
    # Each request retries for up to 0.2+0.4+...+2 = 7 s; the blip lasts 3 short backoffs.
    llm = LLMResource(
        base_url=simulator.base_url,
        api_key=TEST_API_KEY,
        retry_backoff_s=0.2,
        retry_backoff_max_s=2.0,
    )
    requests = [
        ChatRequest(
            r.key,
            {**r.body, "messages": [{"role": "user", "content": f"{r.key} [[sim:503:3]]"}]},
            5,
        )
        for r in chat_requests(40)
    ]
    stats = llm.run_requests(requests, lambda result: None)
    assert stats.ok == 40 and stats.retries == 120
    assert simulator.stats()["faults_injected"]["503"] == 120


@pytest.mark.parametrize(
    ("scheme", "knobs", "kind"),
    [
        ("https", {}, "TLS handshake failed"),  # TLS spoken to a plain-HTTP server
        ("http", {"fault_slow": 1.0, "slow_ms": 3_000}, "timeout"),
    ],
)
def test_root_cause_is_named(
    simulator: SimulatorServer, scheme: str, knobs: dict[str, Any], kind: str
) -> None:
    simulator.configure(**knobs)
    url = simulator.base_url.replace("http://", f"{scheme}://", 1)
    llm = LLMResource(
        base_url=url,
        api_key=TEST_API_KEY,
        timeout_s=0.3,
        circuit_breaker_threshold=3,
        **FAST_RETRIES,
    )
    with pytest.raises(EndpointUnreachable) as raised:
        llm.run_requests(chat_requests(10), lambda result: None)
    assert f"the LLM endpoint {url} cannot be reached: {kind} (" in str(raised.value)
    assert simulator.stats()["chat_completions"] == 0


# Through Dagster


@pytest.mark.timeout(120)
def test_materialize_against_dead_endpoint_fails_fast_naming_it(
    dead_url: str, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    source = source_asset(rows(40))
    # A lower threshold keeps the test short: with no answer at all the rate limiter lets one
    # probe a second through, so the default threshold of 8 takes ~8 s per run.
    resources = dead_resources(dead_url, tmp_path, circuit_breaker_threshold=3, **FAST_RETRIES)
    started = time.monotonic()
    result = dg.materialize(
        [source, llm_asset(make_task(), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
        raise_on_error=False,
    )
    elapsed = time.monotonic() - started

    assert not result.success
    assert elapsed < 2 * QUICKLY_S
    message = step_error(result)
    assert "EndpointUnreachable" in message
    assert f"{dead_url} cannot be reached: connection refused" in message
    assert "no response was paid for" in message and TEST_API_KEY not in message
    assert not (tmp_path / "data" / "label" / "eu.parquet").exists()

    with pytest.raises(EndpointUnreachable, match="connection refused"):
        dg.materialize(
            [source, llm_asset(make_task(), upstream=source)],
            partition_key="eu",
            resources=resources,
            instance=sqlite_instance,
        )


@pytest.mark.timeout(120)
def test_http_500_on_every_attempt_stops_the_step(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    simulator.configure(fault_500=1.0)
    source = source_asset(rows(40))
    resources = make_resources(simulator, tmp_path, max_concurrency=8)
    result = dg.materialize(
        [source, llm_asset(make_task(), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
        raise_on_error=False,
    )
    assert not result.success
    message = step_error(result)
    assert "EndpointUnreachable" in message
    assert f"the LLM endpoint {simulator.base_url} fails every request: HTTP 500" in message
    stats = simulator.stats()
    assert stats["chat_completions"] == 0
    # Rows start until the engine sees overload (4 failures among its last attempts): at most
    # the 8 in flight plus the 3 that can start before the 4th failure lands, 7 attempts each;
    # far fewer than the 40 rows x 7 attempts a step without a breaker would send.
    assert stats["chat_requests"] <= (8 + 3) * 7


def test_row_failures_stay_row_failures(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # More 400s than the threshold, one row that runs out of retries on 503 and one that
    # recovers: the endpoint works, so the step succeeds and only those rows fail.
    bad = {i: "[[sim:context_length]]" for i in range(10)}
    bad |= {10: "[[sim:invalid_json]]", 11: "[[sim:503]]", 12: "[[sim:500:2]]"}
    source = source_asset([{"id": i, "text": f"review {i} {bad.get(i, '')}"} for i in range(40)])
    resources = make_resources(simulator, tmp_path, max_concurrency=4)
    result = dg.materialize(
        [source, llm_asset(make_task(repair_attempts=0), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
    )
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet").set_index("id")
    failed = table[table["llm_status"] == "failed"]["llm_error_class"].to_dict()
    assert failed == {
        **{i: "context_length_exceeded" for i in range(10)},
        10: "invalid_schema",
        11: "retries_exhausted",
    }
    assert "HTTP 503" in table.loc[11, "llm_error"]
    assert table.loc[12, "llm_status"] == "ok"


@pytest.mark.timeout(180)
def test_endpoint_dying_mid_run_loses_nothing_paid(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    # 80 rows x 50 ms over 2 workers: a run of >= 2 s, and the endpoint dies after 10 answers.
    simulator.configure(latency_ms=50)
    source = source_asset(rows(80))
    resources = make_resources(simulator, tmp_path, max_concurrency=2)
    asset = llm_asset(make_task(), upstream=source)
    done = threading.Event()

    def kill_after_some_answers() -> None:
        while not done.is_set():
            if simulator.stats()["chat_completions"] >= 10:
                simulator.configure(fault_disconnect=1.0)  # every connection now drops
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_after_some_answers)
    killer.start()
    try:
        result = dg.materialize(
            [source, asset],
            partition_key="eu",
            resources=resources,
            instance=sqlite_instance,
            raise_on_error=False,
        )
    finally:
        done.set()
        killer.join()
    assert not result.success
    message = step_error(result)
    answered = simulator.stats()["chat_completions"]
    assert 10 <= answered < 80
    assert "EndpointUnreachable" in message and "connection dropped" in message
    assert f"{answered} responses paid before this are in the ledger" in message
    ledger = resources["ledger"]
    assert ledger.count() == answered

    simulator.configure(fault_disconnect=0.0)
    again = dg.materialize(
        [source, asset], partition_key="eu", resources=resources, instance=sqlite_instance
    )
    assert again.success
    stats = simulator.stats()
    assert stats["chat_completions"] == 80 and stats["duplicate_requests"] == 0
    (label,) = [
        m for m in again.asset_materializations_for_node("label") if m.asset_key.path == ["label"]
    ]
    meta = label.metadata
    assert meta["requests_sent"].value == 80 - answered
    assert meta["cache_hits"].value == answered
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet")
    assert (table["llm_status"] == "ok").all() and len(table) == 80
