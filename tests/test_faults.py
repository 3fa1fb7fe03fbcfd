"""Transient faults: every row ends ok or quarantined with its reason, none twice, none late."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pandas as pd

from llm_assets import llm_asset
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource
from llm_assets.simulator import SimulatorServer
from tests.conftest import TEST_API_KEY, make_resources
from tests.test_llm_asset import REGIONS, make_task

ROWS = 2_000
FILTERED = {17, 404, 1999}


def test_twenty_percent_transient_faults_lose_no_row_and_pay_no_row_twice(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    simulator.configure(fault_500=0.1, fault_503=0.05, fault_disconnect=0.05, latency_ms=2)

    @dg.asset(name="texts", partitions_def=REGIONS)
    def texts() -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": range(ROWS),
                "text": [
                    f"ticket {i}" + (" [[sim:content_filter]]" if i in FILTERED else "")
                    for i in range(ROWS)
                ],
            }
        )

    resources = make_resources(simulator, tmp_path, max_concurrency=32, max_retries=8)
    result = dg.materialize(
        [texts, llm_asset(make_task(), upstream=texts)],
        partition_key="us",
        resources=resources,
        instance=sqlite_instance,
    )
    assert result.success

    table = pd.read_parquet(tmp_path / "data" / "label" / "us.parquet")
    assert len(table) == ROWS and table["id"].is_unique
    ok = table[table["llm_status"] == "ok"]
    failed = table[table["llm_status"] == "failed"]
    assert len(ok) + len(failed) == ROWS
    assert set(failed["id"]) == FILTERED
    assert (failed["llm_error_class"] == "content_filter").all()

    quarantine = pd.read_parquet(tmp_path / "data" / "label_quarantine" / "us.parquet")
    assert set(quarantine["id"]) == FILTERED
    assert quarantine["error"].str.contains("content filter").all()

    stats = simulator.stats()
    injected = sum(stats["faults_injected"].get(k, 0) for k in ("500", "503", "disconnect"))
    assert injected > ROWS * 0.15, stats["faults_injected"]
    assert stats["duplicate_requests"] == 0
    assert stats["chat_completions"] == ROWS
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


def test_isolated_failures_are_retried_at_once_not_after_a_growing_backoff(
    simulator: SimulatorServer,
) -> None:
    # A backoff of 20 s would keep each failed row ≥ 10 s; an isolated failure among
    # successes is retried after at most 0.1 s, so the step ends in about its own time.
    failing = {5, 17, 29, 38}  # each fails once, then succeeds
    requests = [
        ChatRequest(
            f"row-{i}",
            {
                "model": "sim-small",
                "messages": [
                    {"role": "user", "content": f"row {i}" + (" [[sim:500:1]]" * (i in failing))}
                ],
            },
            5,
        )
        for i in range(40)
    ]
    llm = LLMResource(
        base_url=simulator.base_url,
        api_key=TEST_API_KEY,
        max_concurrency=4,
        retry_backoff_s=20.0,
        retry_backoff_max_s=20.0,
    )
    results: list[ChatResult] = []
    started = time.monotonic()
    stats = llm.run_requests(requests, results.append)
    elapsed = time.monotonic() - started
    assert stats.ok == 40 and stats.retries == len(failing)
    assert elapsed < 8.0, f"{elapsed:.1f} s: the failed rows waited for a backoff"
    retried = {r.key for r in results if r.attempts == 2}
    assert retried == {f"row-{i}" for i in failing}
