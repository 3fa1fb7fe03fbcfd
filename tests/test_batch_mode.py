"""Batch mode end to end: submit and end, a sensor harvests, a run assembles with 0 online calls."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets import llm_asset
from llm_assets.batching import BatchMode
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.sensors import batch_sensor
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources
from tests.test_llm_asset import REGIONS, make_task

ANSWER_COLUMNS = ["id", "label", "reason", "llm_status"]


def _source(texts: list[str]) -> dg.AssetsDefinition:
    @dg.asset(name="texts", partitions_def=REGIONS)
    def texts_asset() -> pd.DataFrame:
        return pd.DataFrame({"id": range(len(texts)), "text": texts})

    return texts_asset


def finish_batches(simulator: SimulatorServer) -> None:
    """Moves every live batch of the simulator to its end."""
    request = urllib.request.Request(
        f"{simulator.url}/_simulator/batches/advance",
        data=json.dumps({"to_end": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


class Pipeline:
    """One batch-mode asset, its resources, instance and sensor; steps the lifecycle."""

    def __init__(
        self, simulator: SimulatorServer, tmp_path: Path, instance: dg.DagsterInstance,
        texts: list[str], **asset_options: Any,
    ) -> None:  # fmt: skip
        simulator.configure(batch_auto_complete_s=0)
        self.simulator, self.tmp_path, self.instance = simulator, tmp_path, instance
        self.source = _source(texts)
        self.asset = llm_asset(
            make_task(repair_attempts=0), upstream=self.source, mode="batch", **asset_options
        )
        self.resources = make_resources(simulator, tmp_path)
        self.sensor = batch_sensor([self.asset])
        assert dg.materialize(
            [self.source], partition_key="eu", resources=self.resources, instance=instance
        ).success

    def materialize(self) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [self.source, self.asset],
            selection=[self.asset],
            partition_key="eu",
            resources=self.resources,
            instance=self.instance,
        )

    def tick(self) -> list[dg.RunRequest]:
        defs = dg.Definitions(
            assets=[self.source, self.asset], sensors=[self.sensor], resources=self.resources
        )
        with dg.build_sensor_context(
            instance=self.instance, resources=self.resources, definitions=defs
        ) as context:
            data = self.sensor.evaluate_tick(context)
        return list(data.run_requests or [])

    def finish_batches(self) -> None:
        finish_batches(self.simulator)

    def table(self) -> pd.DataFrame:
        return pd.read_parquet(self.tmp_path / "data" / "label" / "eu.parquet")

    def materialized(self) -> bool:
        return bool(self.instance.get_materialized_partitions(dg.AssetKey("label")))


@pytest.mark.timeout(300)
def test_batch_path_submits_once_then_assembles_with_zero_online_requests(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    texts = [f"review {i} says the product is fine" for i in range(12)]
    flow = Pipeline(simulator, tmp_path, sqlite_instance, texts)

    result = flow.materialize()
    assert result.success and not flow.materialized()
    assert simulator.stats()["batches_created"] == 1
    assert simulator.stats()["chat_completions"] == 0
    observation = sqlite_instance.fetch_observations(dg.AssetKey("label"), limit=1).records[0]
    metadata = observation.asset_observation.metadata
    assert metadata["batch_requests_submitted"].value == 12
    # A second materialization while the batch is live submits nothing new.
    assert flow.materialize().success
    assert simulator.stats()["batches_created"] == 1
    assert flow.tick() == []  # not finished yet

    flow.finish_batches()
    (request,) = flow.tick()
    assert request.partition_key == "eu"
    assert request.asset_selection == [dg.AssetKey("label")]
    assert flow.tick()[0].run_key == request.run_key  # asked again until assembled: one run

    assembled = flow.materialize()
    assert assembled.success and flow.materialized()
    assert simulator.stats()["chat_completions"] == 0
    table = flow.table()
    assert (table["llm_status"] == "ok").all() and len(table) == 12
    assert table["llm_batch_id"].notna().all()
    (batch_id,) = set(table["llm_batch_id"])
    assert batch_id.startswith("batch_")
    assert set(table["llm_paid_by_run_id"]) == {result.run_id}
    meta = sqlite_instance.get_latest_materialization_event(dg.AssetKey("label"))
    assert meta is not None and meta.asset_materialization is not None
    values = {k: v.value for k, v in meta.asset_materialization.metadata.items()}
    assert values["batch_answered"] == 12 and values["requests_sent"] == 0
    assert values["batch_saved_usd"] == pytest.approx(values["batch_cost_usd"], abs=1e-4)
    assert flow.tick() == []  # assembled: nothing left to do

    # The same rows online give the same table (answers and schema).
    online_dir = tmp_path / "online"
    online = make_resources(simulator, online_dir)
    source = _source(texts)
    assert dg.materialize(
        [source, llm_asset(make_task(repair_attempts=0), upstream=source)],
        partition_key="eu", resources=online, instance=sqlite_instance,
    ).success  # fmt: skip
    online_table = pd.read_parquet(online_dir / "data" / "label" / "eu.parquet")
    assert list(online_table.columns) == list(table.columns)
    pd.testing.assert_frame_equal(online_table[ANSWER_COLUMNS], table[ANSWER_COLUMNS])


@pytest.mark.timeout(300)
def test_failed_lines_are_resubmitted_once_then_quarantined(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    texts = [f"review {i} is fine" for i in range(9)] + ["always down [[sim:503]]"]
    flow = Pipeline(simulator, tmp_path, sqlite_instance, texts, batch_max_resubmits=1)
    assert flow.materialize().success
    flow.finish_batches()
    assert len(flow.tick()) == 1
    assert flow.materialize().success  # resubmits the failed line
    assert not flow.materialized()
    assert simulator.stats()["batches_created"] == 2
    flow.finish_batches()
    assert len(flow.tick()) == 1
    assert flow.materialize().success
    assert simulator.stats()["batches_created"] == 2 and flow.materialized()
    table = flow.table().set_index("id")
    assert (table.loc[:8, "llm_status"] == "ok").all()
    assert table.loc[9, "llm_status"] == "failed"
    assert table.loc[9, "llm_error_class"] == "batch_failed"
    assert "2 batches" in table.loc[9, "llm_error"]
    quarantine = pd.read_parquet(tmp_path / "data" / "label_quarantine" / "eu.parquet")
    assert quarantine["id"].tolist() == [9]
    assert simulator.stats()["chat_completions"] == 0


@pytest.mark.timeout(300)
def test_expired_batch_keeps_its_finished_lines_and_resubmits_the_rest(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    texts = [f"note {i} is fine" for i in range(10)]
    flow = Pipeline(simulator, tmp_path, sqlite_instance, texts)
    simulator.configure(batch_outcome="expired", batch_partial_fraction=0.5)
    assert flow.materialize().success
    flow.finish_batches()
    assert len(flow.tick()) == 1
    ledger: ResponseLedger = flow.resources["ledger"]
    assert ledger.count() == 5
    simulator.configure(batch_outcome="completed")
    assert flow.materialize().success
    flow.finish_batches()
    assert simulator.stats()["batch_lines"] == 10  # 5 ran, then only the 5 others again
    assert len(flow.tick()) == 1
    assert flow.materialize().success and flow.materialized()
    assert (flow.table()["llm_status"] == "ok").all()
    assert len(set(flow.table()["llm_batch_id"])) == 2


def test_two_concurrent_submitters_create_one_batch(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    simulator.configure(batch_auto_complete_s=0)
    task = make_task()
    requests = []
    for i in range(5):
        body = task.request_body(task.render_messages({"text": f"t{i}"}), "sim-small")
        from llm_assets.resources.llm import ChatRequest

        requests.append(ChatRequest(task.request_key(body), body, 10))
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    llm = LLMResource(base_url=simulator.base_url, api_key="k")
    barrier = threading.Barrier(2)
    plans: list[Any] = []

    class Log:
        def info(self, message: str) -> None:
            pass

    def submit(run_id: str) -> None:
        with llm.batch_client() as client:
            mode = BatchMode(ledger.batch_store(), client, "label", run_id)
            barrier.wait()
            plans.append(mode.plan(requests, {r.key: "eu" for r in requests}, "v1", Log()))

    threads = [threading.Thread(target=submit, args=(f"run-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert simulator.stats()["batches_created"] == 1
    assert sum(len(plan.submitted) for plan in plans) == 1
    assert all(plan.pending for plan in plans)


@pytest.mark.timeout(300)
def test_example_nightly_in_batch_mode_ends_then_the_sensor_builds_insights_and_digest(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    from reviews_example.pipeline import ASSETS, review_batches_sensor

    simulator.configure(batch_auto_complete_s=0)
    resources = make_resources(simulator, tmp_path)
    day = "2026-11-02"
    batch_config = {"ops": {"review_insights": {"config": {"mode": "batch"}}}}
    submitted = dg.materialize(
        ASSETS, partition_key=day, resources=resources, instance=sqlite_instance,
        run_config=batch_config,
    )  # fmt: skip
    assert submitted.success
    assert sqlite_instance.get_materialized_partitions(dg.AssetKey("review_insights")) == set()
    assert sqlite_instance.get_materialized_partitions(dg.AssetKey("daily_digest")) == set()
    finish_batches(simulator)
    defs = dg.Definitions(assets=ASSETS, sensors=[review_batches_sensor], resources=resources)
    with dg.build_sensor_context(
        instance=sqlite_instance, resources=resources, definitions=defs
    ) as context:
        (request,) = review_batches_sensor.evaluate_tick(context).run_requests or []
    assert set(request.asset_selection or []) == {
        dg.AssetKey("review_insights"),
        dg.AssetKey("review_insights_reviewed"),
        dg.AssetKey("review_insights_reviewed_quarantine"),
        dg.AssetKey("daily_digest"),
        dg.AssetKey("daily_digest_quarantine"),
    }
    online_before = simulator.stats()["chat_completions"]
    assembled = dg.materialize(
        ASSETS, selection=request.asset_selection, partition_key=day, resources=resources,
        instance=sqlite_instance, run_config=batch_config,
    )  # fmt: skip
    assert assembled.success
    assert sqlite_instance.get_materialized_partitions(dg.AssetKey("daily_digest")) == {day}
    # Insights come from the batch; only the digest's one request per day goes online.
    assert simulator.stats()["chat_completions"] - online_before == 1
