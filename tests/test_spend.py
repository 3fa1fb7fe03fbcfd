"""The spend asset's totals are the ledger's sums and the sum of the partitions' own figures."""

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

from llm_assets import LLMTask, llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.ledger.rollup import spend_rollup
from llm_assets.simulator import SimulatorServer
from llm_assets.spend import llm_spend_asset
from tests.conftest import make_resources
from tests.test_llm_asset import Label

REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])
TEXTS = {
    "eu": [f"the parcel {i} arrived on time" for i in range(12)],
    # Two rows whose answers never match the schema: failed rows, paid for all the same.
    "us": [f"support ticket {i} was closed" for i in range(6)]
    + [f"ticket {i} [[sim:invalid_json]]" for i in range(2)],
}
TASK = LLMTask(
    name="label",
    system_prompt="Label the sentiment.",
    user_prompt="Text: {text}",
    output_schema=Label,
    id_column="id",
    repair_attempts=0,
)


@dg.asset(name="texts", partitions_def=REGIONS, backfill_policy=dg.BackfillPolicy.single_run())
def texts(context) -> Any:  # type: ignore[no-untyped-def]
    frames = {
        key: pd.DataFrame({"id": range(len(TEXTS[key])), "text": TEXTS[key]})
        for key in context.partition_keys
    }
    return frames if len(frames) > 1 else next(iter(frames.values()))


LABELS = llm_asset(TASK, upstream=texts, max_failure_rate=0.5)
SPEND = llm_spend_asset(assets=[LABELS])
BOTH = {ASSET_PARTITION_RANGE_START_TAG: "eu", ASSET_PARTITION_RANGE_END_TAG: "us"}


def _materializations(instance: dg.DagsterInstance, key: str) -> list[dict[str, Any]]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key)), limit=100
    ).records
    out = []
    for record in records:
        event = record.asset_materialization
        assert event is not None
        figures = {name: value.value for name, value in event.metadata.items()}
        out.append({**figures, "partition": record.partition_key})
    return out


def _spend_run(resources: dict[str, Any], instance: dg.DagsterInstance) -> dict[str, Any]:
    result = dg.materialize(
        [texts, LABELS, SPEND], selection=[SPEND.key], resources=resources, instance=instance
    )
    assert result.success
    (latest,) = _materializations(instance, "llm_spend")[:1]
    return latest


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> ResponseLedger:
    if request.param == "sqlite":
        return ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite"))
    url = request.getfixturevalue("postgres_url")
    return ResponseLedger(backend="postgres", postgres_url=url)


@pytest.mark.timeout(300)
def test_spend_totals_equal_the_ledger_and_the_partitions(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    ledger: ResponseLedger,
    tmp_path: Path,
) -> None:
    resources = {**make_resources(simulator, tmp_path), "ledger": ledger}
    first = dg.materialize(
        [texts, LABELS], resources=resources, instance=sqlite_instance, tags=BOTH
    )
    assert first.success
    # Again for one partition: every answer now comes from the ledger, nothing is paid.
    again = dg.materialize(
        [texts, LABELS], resources=resources, instance=sqlite_instance, partition_key="eu"
    )
    assert again.success

    spend = _spend_run(resources, sqlite_instance)

    partitions = _materializations(sqlite_instance, "label")
    assert len(partitions) == 3
    assert sum(p["requests_sent"] for p in partitions) == len(TEXTS["eu"]) + len(TEXTS["us"])
    entries, ledger_usd = ledger.spend()
    assert ledger_usd > 0
    # Each figure is rounded to the micro-dollar; the sums agree to that, per figure summed.
    assert spend["spend_usd"] == pytest.approx(ledger_usd, abs=1e-6)
    assert spend["spend_usd"] == pytest.approx(
        sum(p["cost_usd"] for p in partitions), abs=1e-6 * len(partitions)
    )
    assert spend["requests"] == entries == sum(p["requests_sent"] for p in partitions)
    assert spend["tokens"] == sum(p["tokens"] for p in partitions)
    rollup = spend_rollup(ledger.get_backend())
    assert spend["tokens"] == sum(row.tokens for row in rollup)

    cached = next(p for p in partitions if p["requests_sent"] == 0)
    assert cached["cost_usd"] == 0 and cached["saved_usd"] > 0
    assert spend["saved_by_ledger_usd"] == pytest.approx(cached["saved_usd"], abs=1e-6)
    assert spend["saved_by_batch_usd"] == 0
    rows = sum(p["rows"] for p in partitions)
    assert spend["failed"] == sum(p["failed"] for p in partitions) == 2
    assert spend["failure_rate"] == pytest.approx(2 / rows, abs=1e-4)

    table = spend["spend_table"]
    records = [record.data for record in table.records]
    assert {r["asset"] for r in records} == {"label"}
    assert sum(r["spend_usd"] for r in records) == pytest.approx(ledger_usd, abs=1e-6)
    assert sum(r["requests"] for r in records) == entries
    savings = ("saved_by_ledger_usd", "saved_by_provider_cache_usd", "saved_by_batch_usd")
    assert sum(r["saved_usd"] for r in records) == pytest.approx(
        sum(spend[name] for name in savings), abs=1e-5
    )
    columns = [c.name for c in table.schema.columns]
    assert columns[:5] == ["day", "asset", "partition", "model", "spend_usd"]
    # By partition: each partition's line holds what that partition paid, not the day's sum.
    for partition in ("eu", "us"):
        paid = sum(p["cost_usd"] for p in partitions if p["partition"] == partition)
        shown = sum(r["spend_usd"] for r in records if r["partition"] == partition)
        assert paid > 0 and shown == pytest.approx(paid, abs=1e-6)
    chart = spend["chart"]
    for section in ("Spend by day", "Spend by partition", "Spend by model", "Spend by asset"):
        assert section in chart
    assert "| label eu |" in chart and "| sim-small |" in chart
    assert spend["spend"].startswith("$") and "by the provider's cache" in spend["spend"]
    assert next(iter(spend)) == "spend"
    stored = pd.read_parquet(tmp_path / "data" / "llm_spend.parquet")
    assert stored["spend_usd"].sum() == pytest.approx(ledger_usd, abs=1e-6)


@pytest.mark.timeout(300)
def test_spend_of_an_empty_ledger_is_zero_and_says_so(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    spend = _spend_run(make_resources(simulator, tmp_path), sqlite_instance)
    assert spend["spend_usd"] == 0 and spend["requests"] == 0 and spend["failure_rate"] == 0
    assert "nothing paid yet" in spend["chart"]
