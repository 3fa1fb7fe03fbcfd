"""Batch answers in the spend asset: paid at the batch price, saved by the discount, not cache."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from llm_assets.simulator import SimulatorServer
from llm_assets.spend import llm_spend_asset
from tests.test_batch_mode import Pipeline


def _latest(instance: dg.DagsterInstance, key: str) -> dict[str, object]:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.mark.timeout(300)
def test_batch_spend_is_the_ledgers_and_its_discount_is_saved_by_batch(
    simulator: SimulatorServer, tmp_path: Path, sqlite_instance: dg.DagsterInstance
) -> None:
    flow = Pipeline(simulator, tmp_path, sqlite_instance, [f"review {i} is fine" for i in range(8)])
    assert flow.materialize().success
    flow.finish_batches()
    assert len(flow.tick()) == 1
    # Any run of the partition assembles the batch's answers, the sensor's or another: the
    # figures come from the batch store and the ledger, not from the run's tags.
    assert flow.materialize().success
    partition = _latest(sqlite_instance, "label")
    assert partition["saved_usd"] == 0 and "paid by batch" in str(partition["spend"])

    spend_asset = llm_spend_asset(assets=[flow.asset])
    assert dg.materialize(
        [flow.source, flow.asset, spend_asset],
        selection=[spend_asset.key],
        resources=flow.resources,
        instance=sqlite_instance,
    ).success
    spend = _latest(sqlite_instance, "llm_spend")

    entries, ledger_usd = flow.resources["ledger"].spend()
    assert entries == 8 and ledger_usd > 0
    assert spend["spend_usd"] == pytest.approx(ledger_usd, abs=1e-6)
    assert spend["requests"] == 8
    # Paid by the batch, assembled from the ledger: no new online spend, and not a cache save.
    assert partition["cost_usd"] == 0 and partition["batch_answered"] == 8
    assert spend["spend_usd"] == pytest.approx(partition["batch_cost_usd"], abs=1e-6)
    assert spend["saved_by_ledger_usd"] == 0
    # At half price the discount saved as much as was paid.
    assert spend["saved_by_batch_usd"] == pytest.approx(ledger_usd, abs=1e-6)
    assert spend["saved_by_batch_usd"] == pytest.approx(partition["batch_saved_usd"], abs=1e-6)
