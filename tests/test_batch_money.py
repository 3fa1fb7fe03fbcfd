"""A partition assembled from a batch shows the batch's price as paid, never as saved.

Submit → the sensor harvests → the sensor's run assembles, over two partitions, against the
simulator's Batch API. Each partition's figures must add up to what the ledger records as paid
for its batch; ``saved_usd`` counts only answers the ledger held from earlier work. The step
that only submits says why the ``failure_rate`` check is not evaluated, and neither it nor a
range run gets Dagster's "did not yield expected outputs".
"""

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

from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.sensors import batch_sensor
from llm_assets.simulator import SimulatorServer
from llm_assets.spend import llm_spend_asset
from tests.conftest import make_resources
from tests.test_batch_mode import finish_batches
from tests.test_partition_figures import TASK, _check_records, _metadata, _texts

LABEL = dg.AssetKey("label")
BOTH = {ASSET_PARTITION_RANGE_START_TAG: "eu", ASSET_PARTITION_RANGE_END_TAG: "us"}
NOT_YIELDED = "did not yield or return expected outputs"
USD = 2e-6  # partition figures are rounded to the micro-dollar


class BatchFlow:
    """A batch-mode ``label`` asset over ``eu`` and ``us``, its sensor and its ledger."""

    def __init__(
        self, simulator: SimulatorServer, tmp_path: Path, instance: dg.DagsterInstance,
        texts: dict[str, list[str]],
    ) -> None:  # fmt: skip
        simulator.configure(batch_auto_complete_s=0)
        self.simulator, self.tmp_path, self.instance = simulator, tmp_path, instance
        self.texts = texts
        self.source = _texts(texts)
        self.asset = llm_asset(TASK, upstream=self.source, mode="batch")
        self.resources = make_resources(simulator, tmp_path)
        self.sensor = batch_sensor([self.asset])

    @property
    def ledger(self) -> ResponseLedger:
        return self.resources["ledger"]

    def load_texts(self, partition: str | None, tags: dict[str, str] | None = None) -> None:
        assert dg.materialize(
            [self.source],
            partition_key=partition,
            resources=self.resources,
            instance=self.instance,
            tags=tags,
        ).success

    def run(
        self, partition: str | None, tags: dict[str, str] | None = None, mode: str = "batch"
    ) -> dg.ExecuteInProcessResult:
        """Materializes ``label`` for ``partition`` (or the range in ``tags``) in ``mode``."""
        result = dg.materialize(
            [self.source, self.asset],
            selection=[self.asset],
            partition_key=partition,
            resources=self.resources,
            instance=self.instance,
            tags=tags,
            run_config={"ops": {"label": {"config": {"mode": mode}}}},
        )
        assert result.success
        return result

    def harvest(self) -> list[dg.RunRequest]:
        """Finishes the batches; what the sensor's tick then asks for."""
        finish_batches(self.simulator)
        defs = dg.Definitions(
            assets=[self.source, self.asset], sensors=[self.sensor], resources=self.resources
        )
        with dg.build_sensor_context(
            instance=self.instance, resources=self.resources, definitions=defs
        ) as context:
            return list(self.sensor.evaluate_tick(context).run_requests or [])

    def assemble(self, requests: list[dg.RunRequest] | None = None) -> dict[str, str]:
        """Runs what the sensor asks for (after ``harvest``); the run ids by partition."""
        runs = {}
        for request in self.harvest() if requests is None else requests:
            assert request.partition_key is not None
            runs[request.partition_key] = self.run(request.partition_key, request.tags).run_id
        return runs

    def spend(self) -> dict[str, Any]:
        """Materializes ``llm_spend``; its metadata."""
        spend_asset = llm_spend_asset(assets=[self.asset])
        assert dg.materialize(
            [self.source, self.asset, spend_asset],
            selection=[spend_asset.key],
            resources=self.resources,
            instance=self.instance,
        ).success
        event = self.instance.get_latest_materialization_event(spend_asset.key)
        assert event is not None and event.asset_materialization is not None
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    def table(self, partition: str) -> pd.DataFrame:
        return pd.read_parquet(self.tmp_path / "data" / "label" / f"{partition}.parquet")

    def paid(self, partition: str, *, batch: bool) -> float:
        """What the ledger records as paid for the partition's rows (by batch, or online)."""
        keys = sorted(set(self.table(partition)["llm_request_hash"]))
        entries = self.ledger.get_many(keys).values()
        return sum(
            e.cost_usd for e in entries if bool(e.response.get("llm_assets_batch_id")) == batch
        )


def _log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message or "" for entry in instance.all_logs(run_id)]


@pytest.mark.timeout(300)
def test_batch_partitions_show_the_batch_price_as_paid_and_save_nothing(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    texts = {
        "eu": [f"eu review {i} says the product is fine" for i in range(8)],
        "us": [f"us review {i} says the product is fine" for i in range(5)],
    }
    flow = BatchFlow(simulator, tmp_path, sqlite_instance, texts)
    flow.load_texts(None, BOTH)

    submit = flow.run(None, BOTH)  # one step over both partitions submits one batch for each
    assert simulator.stats()["batches_created"] == 2
    # The submitting step says why it left the check out, and Dagster does not complain.
    messages = _log_messages(sqlite_instance, submit.run_id)
    assert not [m for m in messages if NOT_YIELDED in m]
    assert [m for m in messages if "evaluated when the batch is assembled" in m]
    assert {s for found in _check_records(sqlite_instance).values() for s in found} == {
        AssetCheckExecutionRecordStatus.PLANNED  # Dagster shows it skipped: not passed
    }

    runs = flow.assemble()
    assert sorted(runs) == ["eu", "us"]
    assert simulator.stats()["chat_completions"] == 0
    total_batch = 0.0
    for partition, count in (("eu", 8), ("us", 5)):
        meta = _metadata(sqlite_instance, LABEL, partition)
        paid = flow.paid(partition, batch=True)
        assert paid > 0 and flow.paid(partition, batch=False) == 0
        # The cost figures add up to the ledger's price for the batch: paid, not saved.
        assert meta["batch_answered"] == count and meta["requests_sent"] == 0
        assert meta["cost_usd"] + meta["batch_cost_usd"] == pytest.approx(paid, abs=USD)
        assert meta["saved_usd"] == 0 and meta["cache_hits"] == 0
        assert "paid by batch" in meta["spend"] and meta["spend"].endswith("$0 saved by the ledger")
        assert not [m for m in _log_messages(sqlite_instance, runs[partition]) if NOT_YIELDED in m]
        total_batch += meta["batch_cost_usd"]
    assert _check_records(sqlite_instance)["eu"][0] == AssetCheckExecutionRecordStatus.SUCCEEDED
    _entries, ledger_usd = flow.ledger.spend()
    assert total_batch == pytest.approx(ledger_usd, abs=2 * USD)

    # The spend asset: everything was paid, nothing was saved by the ledger.
    spend = flow.spend()
    assert spend["spend_usd"] == pytest.approx(ledger_usd, abs=1e-6)
    assert spend["saved_by_ledger_usd"] == 0

    # Materialized again, the batch's answers are earlier work: saved, not paid again.
    flow.run("eu")
    meta = _metadata(sqlite_instance, LABEL, "eu")
    assert "batch_answered" not in meta and meta["cost_usd"] == 0
    assert meta["saved_usd"] == pytest.approx(flow.paid("eu", batch=True), abs=USD)


@pytest.mark.timeout(300)
def test_rows_answered_before_the_batch_are_saved_and_only_they(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    earlier = [f"eu note {i} is fine" for i in range(4)]
    flow = BatchFlow(simulator, tmp_path, sqlite_instance, {"eu": list(earlier), "us": []})
    flow.load_texts("eu")
    flow.run("eu", mode="online")  # 4 rows answered and paid online
    online_usd = flow.paid("eu", batch=False)
    assert online_usd > 0

    flow.texts["eu"] += [f"eu note {i} is new" for i in range(6)]
    flow.load_texts("eu")
    flow.run("eu")  # submits the 6 new rows only
    assert flow.assemble().keys() == {"eu"}
    meta = _metadata(sqlite_instance, LABEL, "eu")
    assert meta["rows"] == 10 and meta["batch_answered"] == 6 and meta["cache_hits"] == 4
    assert meta["saved_usd"] == pytest.approx(online_usd, abs=USD)
    assert meta["batch_cost_usd"] == pytest.approx(flow.paid("eu", batch=True), abs=USD)
    assert flow.paid("eu", batch=True) > 0 and meta["cost_usd"] == 0
    # The spend asset counts the sensor's run's savings as reported: the 4 earlier answers.
    spend = flow.spend()
    assert spend["saved_by_ledger_usd"] == pytest.approx(online_usd, abs=USD)
    assert spend["spend_usd"] == pytest.approx(flow.ledger.spend()[1], abs=1e-6)


@pytest.mark.timeout(300)
def test_a_batch_and_its_resubmission_are_both_paid_in_the_assembly(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    flow = BatchFlow(
        simulator, tmp_path, sqlite_instance, {"eu": [f"memo {i} is fine" for i in range(10)]}
    )
    flow.load_texts("eu")
    simulator.configure(batch_outcome="expired", batch_partial_fraction=0.5)
    flow.run("eu")
    requests = flow.harvest()  # 5 answered
    simulator.configure(batch_outcome="completed")
    assert flow.assemble(requests).keys() == {"eu"}  # submits the 5 others again
    assert simulator.stats()["batches_created"] == 2 and flow.assemble().keys() == {"eu"}
    assert simulator.stats()["batches_created"] == 2
    meta = _metadata(sqlite_instance, LABEL, "eu")
    assert meta["batch_answered"] == 10 and meta["saved_usd"] == 0
    assert meta["batch_cost_usd"] == pytest.approx(flow.paid("eu", batch=True), abs=USD)
    assert len(set(flow.table("eu")["llm_batch_id"])) == 2


@pytest.mark.timeout(300)
def test_a_range_run_evaluates_each_partitions_check_without_dagsters_complaint(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    texts = {"eu": ["the eu text is fine"], "us": ["the us text is fine"]}
    flow = BatchFlow(simulator, tmp_path, sqlite_instance, texts)
    flow.load_texts(None, BOTH)
    result = flow.run(None, BOTH, mode="online")
    assert not [m for m in _log_messages(sqlite_instance, result.run_id) if NOT_YIELDED in m]
    assert _check_records(sqlite_instance) == {
        "eu": [AssetCheckExecutionRecordStatus.SUCCEEDED],
        "us": [AssetCheckExecutionRecordStatus.SUCCEEDED],
    }
