"""Planner assets: parallel speed-up of mapped tool steps under the multiprocess executor.

A plan of 8 calls of a tool that waits 2 s on a backend (I/O, not CPU), one call per mapped
step, on the multiprocess executor with up to 8 step processes started by a forkserver that
has the code preloaded. ``planner_parallel_speedup`` is the sum of the tools' own durations
divided by the wall time of the mapped stage (first tool step start to last tool step end).
The per-step figures say where time goes around a step: ``planner_step_startup_s`` from the
executor starting a step's process to the step starting, ``planner_step_overhead_s`` from the
step starting to it ending, minus the tool's own time.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from llm_assets import LLMResource, LLMTask, ParquetIOManager, ResponseLedger
from llm_assets.planner import planned_asset, tool
from llm_assets.simulator import SimulatorServer

CALLS = 8
TOOL_SECONDS = 2.0
_DIR_ENV = "BENCH_PLANNER_DIR"
_URL_ENV = "BENCH_PLANNER_URL"


class Item(BaseModel):
    item: str


class Fetched(BaseModel):
    item: str
    seconds: float


@tool
def wait_on_backend(args: Item) -> Fetched:
    """Fetches a record from a slow backend (waits on I/O)."""
    started = time.monotonic()
    time.sleep(TOOL_SECONDS)
    return Fetched(item=args.item, seconds=time.monotonic() - started)


@dg.asset(name="bench_items")
def items() -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(CALLS)],
                         "item": [f"record-{i}" for i in range(CALLS)]})  # fmt: skip


class Summary(BaseModel):
    summary: str


def bench_job() -> dg.JobDefinition:
    """The benchmark's job, rebuilt in every step process (``dg.reconstructable``)."""
    workdir = Path(os.environ[_DIR_ENV])
    asset = planned_asset(
        name="bench_planned",
        upstream=items,
        planner_prompt="item: {item}",
        tools=[wait_on_backend],
        synthesizer=LLMTask(
            name="bench_summary",
            user_prompt="{item}: {tool_results}",
            output_schema=Summary,
            id_column="item_id",
        ),
        max_tool_calls=CALLS,
    )
    defs = dg.Definitions(
        assets=[items, asset],
        jobs=[dg.define_asset_job("bench_planner_job", selection=[items, asset])],
        resources={
            "llm": LLMResource(base_url=os.environ[_URL_ENV], api_key="sk-bench",
                               model="sim-small"),
            "ledger": ResponseLedger(sqlite_path=str(workdir / "ledger.sqlite")),
            "io_manager": ParquetIOManager(base_dir=str(workdir / "data")),
        },
    )  # fmt: skip
    return defs.resolve_job_def("bench_planner_job")


def _times(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key or "_tools[" not in event.step_key:
            continue
        times.setdefault(event.step_key, {})[event.event_type_value] = record.timestamp
    return times


def run() -> dict[str, float]:
    executor: dict[str, Any] = {
        "max_concurrent": CALLS,
        "start_method": {"forkserver": {"preload_modules": ["bench.bench_planner"]}},
    }
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer() as simulator:
        workdir = Path(tmp)
        os.environ[_DIR_ENV] = str(workdir)
        os.environ[_URL_ENV] = simulator.base_url
        home = workdir / "home"
        home.mkdir()
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            started = time.monotonic()
            result = dg.execute_job(
                dg.reconstructable(bench_job),
                instance=instance,
                run_config={"execution": {"config": {"multiprocess": executor}}},
            )
            wall = time.monotonic() - started
            assert result.success, "the benchmark run failed"
            steps = _times(instance, result.run_id)
    assert len(steps) == CALLS, f"expected {CALLS} mapped steps, saw {len(steps)}"
    begin = min(s["STEP_START"] for s in steps.values())
    end = max(s["STEP_SUCCESS"] for s in steps.values())
    stage = end - begin
    startup = [s["STEP_START"] - s["STEP_WORKER_STARTING"] for s in steps.values()]
    overhead = [s["STEP_SUCCESS"] - s["STEP_START"] - TOOL_SECONDS for s in steps.values()]
    return {
        "planner_parallel_speedup": round(CALLS * TOOL_SECONDS / stage, 2),
        "planner_mapped_stage_s": round(stage, 2),
        "planner_step_startup_s": round(sum(startup) / len(startup), 2),
        "planner_step_overhead_s": round(sum(overhead) / len(overhead), 2),
        "planner_run_wall_s": round(wall, 1),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value}")
