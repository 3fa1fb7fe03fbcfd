"""Batch mode vs online for the same rows: what was paid, and online calls of the assembly.

2,000 rows of the example's review task, on a fresh ledger each: once online, once in batch
mode (submit, the simulator finishes the batch, ``batch_sensor`` harvests it, the assembling
run builds the table). Cost is what the ledger records as paid (the same price table for both,
the batch at ``LLMResource.batch_discount``); the assembly's online requests come from the
simulator's counter.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from reviews_example.pipeline import INSIGHT_TASK
from reviews_example.sample_reviews import generate_reviews

from llm_assets import LLMResource, ParquetIOManager, ResponseLedger, llm_asset
from llm_assets.sensors import batch_sensor
from llm_assets.simulator import SimulatorConfig, SimulatorServer

ROWS = 2_000


def _reviews() -> pd.DataFrame:
    frames, day = [], 1
    while sum(len(f) for f in frames) < ROWS:
        frames.append(generate_reviews(f"2026-10-{day:02d}"))
        day += 1
    table = pd.concat(frames, ignore_index=True).head(ROWS)
    return table


@dg.asset(name="raw_reviews")
def reviews() -> pd.DataFrame:
    return _reviews()


def _resources(simulator: SimulatorServer, workdir: Path) -> dict[str, Any]:
    return {
        "llm": LLMResource(base_url=simulator.base_url, api_key="sk-bench", model="sim-small",
                           max_concurrency=64),
        "ledger": ResponseLedger(sqlite_path=str(workdir / "ledger.sqlite")),
        "io_manager": ParquetIOManager(base_dir=str(workdir / "data")),
    }  # fmt: skip


def _paid(resources: dict[str, Any]) -> float:
    return float(resources["ledger"].spend()[1])


def run() -> dict[str, float]:
    asset_online = llm_asset(INSIGHT_TASK, upstream=reviews)
    asset_batch = llm_asset(INSIGHT_TASK, upstream=reviews, mode="batch")
    sensor = batch_sensor([asset_batch])
    config = SimulatorConfig(batch_auto_complete_s=0, latency_ms=0.0)
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(config) as simulator:
        online_dir, batch_dir = Path(tmp) / "online", Path(tmp) / "batch"
        online_dir.mkdir()
        batch_dir.mkdir()
        online = _resources(simulator, online_dir)
        with dg.instance_for_test(temp_dir=str(online_dir)) as instance:
            assert dg.materialize([reviews, asset_online], resources=online,
                                  instance=instance).success  # fmt: skip
        batch = _resources(simulator, batch_dir)
        with dg.instance_for_test(temp_dir=str(batch_dir)) as instance:
            assert dg.materialize([reviews, asset_batch], resources=batch,
                                  instance=instance).success  # fmt: skip
            advance = urllib.request.Request(
                f"{simulator.url}/_simulator/batches/advance",
                data=json.dumps({"to_end": True}).encode(),
                headers={"content-type": "application/json"},
                method="POST",
            )
            urllib.request.urlopen(advance, timeout=60).read()
            defs = dg.Definitions(assets=[reviews, asset_batch], sensors=[sensor],
                                  resources=batch)  # fmt: skip
            with dg.build_sensor_context(instance=instance, resources=batch,
                                         definitions=defs) as context:  # fmt: skip
                requests = sensor.evaluate_tick(context).run_requests or []
            assert len(requests) == 1
            before = simulator.stats()["chat_completions"]
            assert dg.materialize([reviews, asset_batch], selection=[asset_batch],
                                  resources=batch, instance=instance).success  # fmt: skip
            assembly_online = simulator.stats()["chat_completions"] - before
        online_cost, batch_cost = _paid(online), _paid(batch)
        table = pd.read_parquet(batch_dir / "data" / "review_insights.parquet")
        assert len(table) == ROWS and (table["llm_status"] == "ok").all()
    return {
        "batch_cost_usd": batch_cost,
        "online_cost_usd": online_cost,
        "batch_cost_fraction_of_online": batch_cost / online_cost,
        "batch_assembly_online_requests": float(assembly_online),
    }
