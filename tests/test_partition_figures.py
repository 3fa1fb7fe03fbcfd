"""Every partition of a multi-partition run carries its own figures and its own check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from reviews_example.pipeline import ASSETS

from llm_assets import LLMTask, llm_asset
from llm_assets.simulator import SimulatorServer
from llm_assets.summary import money
from tests.test_llm_asset import Label

DAYS = ["2026-11-02", "2026-11-03"]
INSIGHTS = dg.AssetKey("review_insights")
DIGEST = dg.AssetKey("daily_digest")
RANGE = {ASSET_PARTITION_RANGE_START_TAG: DAYS[0], ASSET_PARTITION_RANGE_END_TAG: DAYS[-1]}


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {key.to_user_string()} {partition}"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.mark.timeout(600)
def test_each_partition_of_a_range_run_has_its_own_rows_cost_preview_and_report(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = dg.materialize(ASSETS, resources=resources, instance=sqlite_instance, tags=RANGE)
    assert result.success and len(sqlite_instance.get_runs()) == 1
    totals = {"rows": 0, "cost": 0.0}
    for day in DAYS:
        table = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{day}.parquet")
        meta = _metadata(sqlite_instance, INSIGHTS, day)
        assert meta["rows"] == meta["dagster/row_count"] == len(table)
        assert meta["ok"] + meta["failed"] == len(table)
        assert meta["failed"] == int((table["llm_status"] == "failed").sum())
        # A request shared with the other day is paid once and counted once, by its first day.
        first_seen = ~table["llm_request_hash"].isin(
            set() if day == DAYS[0] else set(_hashes(tmp_path, DAYS[0]))
        )
        unique = table[first_seen].drop_duplicates("llm_request_hash")
        assert meta["requests_sent"] == len(unique)
        # Money is kept to the micro-dollar, so a partition's cost is its rows' cost.
        assert meta["cost_usd"] == pytest.approx(unique["llm_cost_usd"].sum(), abs=1e-6)
        assert meta["spend"].startswith(
            f"{money(meta['cost_usd'])} new for {meta['tokens']:,} tokens, "
        )
        assert meta["input_tokens"] == unique["llm_input_tokens"].sum()
        assert table["review_id"].iloc[0] in meta["preview"]
        other = DAYS[1] if day == DAYS[0] else DAYS[0]
        assert other not in meta["preview"]
        digest = _metadata(sqlite_instance, DIGEST, day)
        assert day in digest["report"] and other not in digest["report"]
        assert digest["rows"] == 1
        totals["rows"] += meta["rows"]
        totals["cost"] += meta["cost_usd"]
    first, second = (_metadata(sqlite_instance, INSIGHTS, d) for d in DAYS)
    assert first["rows"] != second["rows"], "the sample days should differ in size"
    # The step's totals are written once, in the run log.
    lines = [
        r.user_message
        for r in sqlite_instance.all_logs(result.run_id)
        if "review_insights: 2 partitions" in r.user_message
    ]
    assert len(lines) == 1
    assert f"{totals['rows']} rows" in lines[0]


def _hashes(tmp_path: Path, day: str) -> list[str]:
    table = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{day}.parquet")
    return table["llm_request_hash"].tolist()


REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])


def _texts(by_region: dict[str, list[str]]) -> dg.AssetsDefinition:
    def frame(region: str) -> pd.DataFrame:
        texts = by_region[region]
        return pd.DataFrame({"id": range(len(texts)), "text": texts})

    @dg.asset(name="texts", partitions_def=REGIONS, backfill_policy=dg.BackfillPolicy.single_run())
    def _source(context) -> Any:  # type: ignore[no-untyped-def]
        keys = list(context.partition_keys)
        return {k: frame(k) for k in keys} if len(keys) > 1 else frame(keys[0])

    return _source


TASK = LLMTask(
    name="label",
    system_prompt="Label the sentiment.",
    user_prompt="Text: {text}",
    output_schema=Label,
    id_column="id",
    repair_attempts=0,
)


def _check_records(
    instance: dg.DagsterInstance,
) -> dict[str | None, list[AssetCheckExecutionRecordStatus]]:
    key = dg.AssetCheckKey(dg.AssetKey("label"), "failure_rate")
    by_partition: dict[str | None, list[AssetCheckExecutionRecordStatus]] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=50):
        by_partition.setdefault(record.partition, []).append(record.status)
    return by_partition


@pytest.mark.timeout(300)
def test_failure_rate_check_judges_each_partition(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    good = [f"text {i} is fine" for i in range(10)]
    bad = [f"text {i} [[sim:invalid_json]]" for i in range(5)] + good[:5]
    source = _texts({"eu": good, "us": bad})
    result = dg.materialize(
        [source, llm_asset(TASK, upstream=source)],
        resources=resources,
        instance=sqlite_instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: "eu", ASSET_PARTITION_RANGE_END_TAG: "us"},
    )
    assert result.success
    records = _check_records(sqlite_instance)
    assert records["eu"] == [AssetCheckExecutionRecordStatus.SUCCEEDED]
    assert records["us"] == [AssetCheckExecutionRecordStatus.FAILED]
    assert _metadata(sqlite_instance, dg.AssetKey("label"), "us")["failed"] == 5
    assert _metadata(sqlite_instance, dg.AssetKey("label"), "eu")["failed"] == 0


@pytest.mark.timeout(300)
def test_failure_rate_check_is_not_failed_by_a_step_that_never_reached_it(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    source = _texts({"eu": ["a text"] * 3, "us": []})
    result = dg.materialize(
        [source, llm_asset(TASK, upstream=source, max_cost_usd=0.0)],
        resources=resources,
        instance=sqlite_instance,
        partition_key="eu",
        raise_on_error=False,
    )
    assert not result.success
    statuses = [s for found in _check_records(sqlite_instance).values() for s in found]
    assert AssetCheckExecutionRecordStatus.FAILED not in statuses
