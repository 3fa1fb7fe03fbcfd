"""The example pipeline end to end: simulator over real HTTP, real Dagster instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from reviews_example.pipeline import ASSETS, DIGEST_TASK, INSIGHT_TASK, ReviewInsight
from reviews_example.sample_reviews import generate_reviews

from llm_assets.provenance import PROVENANCE_COLUMNS
from llm_assets.simulator import SimulatorServer

PARTITION = "2026-11-01"
INSIGHTS = dg.AssetKey("review_insights")
DIGEST = dg.AssetKey("daily_digest")


def _materialization(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(key)
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _check_one_partition(
    instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    result = dg.materialize(ASSETS, partition_key=PARTITION, resources=resources, instance=instance)
    assert result.success

    reviews = generate_reviews(PARTITION)
    insights = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{PARTITION}.parquet")
    assert len(insights) == len(reviews)
    assert set(ReviewInsight.model_fields) <= set(insights.columns)
    assert set(PROVENANCE_COLUMNS) <= set(insights.columns)
    assert (insights["llm_status"] == "ok").all()
    assert insights["review_id"].tolist() == reviews["review_id"].tolist()
    assert (insights["llm_task_version"] == INSIGHT_TASK.version_for("sim-small")).all()
    assert (insights["llm_run_id"] == result.run_id).all()
    assert (insights["llm_input_tokens"] > 0).all() and (insights["llm_cost_usd"] > 0).all()
    assert insights["llm_request_hash"].str.len().eq(64).all()

    digest = pd.read_parquet(tmp_path / "data" / "daily_digest" / f"{PARTITION}.parquet")
    assert digest["day"].tolist() == [PARTITION]
    assert digest["llm_status"].tolist() == ["ok"]
    assert (digest["llm_task_version"] == DIGEST_TASK.version_for("sim-small")).all()

    meta = _materialization(instance, INSIGHTS)
    assert meta["rows"] == len(reviews) and meta["ok"] == len(reviews) and meta["failed"] == 0
    assert (
        meta["tokens"] == insights["llm_input_tokens"].sum() + insights["llm_output_tokens"].sum()
    )
    assert meta["cost_usd"] == pytest.approx(insights["llm_cost_usd"].sum(), rel=1e-3)
    assert meta["task_version"] == INSIGHT_TASK.version_for("sim-small")
    assert "sim-small" in meta["model"]
    assert "| review_id |" in meta["preview"]
    digest_meta = _materialization(instance, DIGEST)
    assert "Customer feedback digest" in digest_meta["report"]

    stats = simulator.stats()
    assert stats["chat_completions"] == len(reviews) + 1


def test_example_pipeline_on_sqlite_instance(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    _check_one_partition(sqlite_instance, simulator, resources, tmp_path)


@pytest.mark.postgres
def test_example_pipeline_on_postgres_instance(
    postgres_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    _check_one_partition(postgres_instance, simulator, resources, tmp_path)
    runs = postgres_instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success

    from llm_assets.trace import trace_row

    defs = dg.Definitions(assets=ASSETS, resources=resources)
    trace = trace_row(defs, postgres_instance, "review_insights", f"{PARTITION}-0005", PARTITION)
    assert trace.paid_by_run_id == runs[0].run_id == trace.materialized_by_run_id
    assert trace.materialized_by_run_status == "SUCCESS" and trace.prompt is not None
    assert trace.upstream[0].run_id == runs[0].run_id


def test_partition_range_is_one_run_and_three_files(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    days = ["2026-11-01", "2026-11-02", "2026-11-03"]
    result = dg.materialize(
        ASSETS,
        resources=resources,
        instance=sqlite_instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: days[0], ASSET_PARTITION_RANGE_END_TAG: days[-1]},
    )
    assert result.success
    assert len(sqlite_instance.get_runs()) == 1
    for asset in ("raw_reviews", "review_insights", "daily_digest"):
        files = sorted(p.name for p in (tmp_path / "data" / asset).glob("*.parquet"))
        assert files == [f"{d}.parquet" for d in days]
    hashes: set[str] = set()
    for day in days:
        insights = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{day}.parquet")
        assert insights["review_id"].str.startswith(day).all()
        assert len(insights) == len(generate_reviews(day))
        assert (insights["llm_status"] == "ok").all()
        hashes |= set(insights["llm_request_hash"])
    materialized = sqlite_instance.get_materialized_partitions(INSIGHTS)
    assert materialized == set(days)
    # Reviews with identical text across days are one request: sent once, answered for both.
    assert simulator.stats()["chat_completions"] == len(hashes) + len(days)
    assert simulator.stats()["duplicate_requests"] == 0
