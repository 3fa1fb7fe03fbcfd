"""Transient faults at scale: every row ends ok or quarantined with its reason, none twice."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from llm_assets import llm_asset
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources
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
