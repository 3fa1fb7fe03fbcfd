"""Planner assets: parallel speed-up of mapped tool steps under the multiprocess executor.

A plan of 8 calls of a tool that waits 2 s on a backend (I/O, not CPU), one call per mapped
step, on the multiprocess executor with up to 8 step processes started by a forkserver that
has the code preloaded. ``planner_parallel_speedup`` is the sum of the tools' own durations
divided by the wall time of the mapped stage (first tool step start to last tool step end).
The per-step figures say where time goes around a step: ``planner_step_startup_s`` from the
executor starting a step's process to the step starting, ``planner_step_overhead_s`` from the
step starting to it ending, minus the tool's own time. ``planner_batched_speedup`` is the same
plan with ``calls_per_step=4`` and ``step_threads=4``: two mapped steps, each running its four
calls in threads.
"""

from __future__ import annotations

import functools
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
BATCHED = 4


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
    """The benchmark's job, built once per process (``dg.reconstructable`` calls it in each)."""
    return _build_job(1)


def bench_batched_job() -> dg.JobDefinition:
    """The same plan, ``BATCHED`` calls per step run in as many threads."""
    return _build_job(BATCHED)


@functools.cache
def _build_job(calls_per_step: int) -> dg.JobDefinition:
    workdir = Path(os.environ[_DIR_ENV])
    asset = planned_asset(
        name=f"bench_planned_{calls_per_step}",
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
        calls_per_step=calls_per_step,
        step_threads=calls_per_step,
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


# The forkserver imports this module once with the run's environment: building the job there
# means every step process forked from it starts with the job already built.
if _DIR_ENV in os.environ and _URL_ENV in os.environ:
    bench_job()
    bench_batched_job()


def _times(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, float]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key or "_tools[" not in event.step_key:
            continue
        times.setdefault(event.step_key, {})[event.event_type_value] = record.timestamp
    return times


def _measure(
    workdir: Path, calls_per_step: int, executor: dict[str, Any]
) -> tuple[dict[str, dict[str, float]], float]:
    home = workdir / f"home_{calls_per_step}"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        started = time.monotonic()
        result = dg.execute_job(
            dg.reconstructable(bench_job if calls_per_step == 1 else bench_batched_job),
            instance=instance,
            run_config={"execution": {"config": {"multiprocess": executor}}},
        )
        wall = time.monotonic() - started
        assert result.success, "the benchmark run failed"
        return _times(instance, result.run_id), wall


def _stage(steps: dict[str, dict[str, float]]) -> float:
    return max(s["STEP_SUCCESS"] for s in steps.values()) - min(
        s["STEP_START"] for s in steps.values()
    )


def run() -> dict[str, float]:
    executor: dict[str, Any] = {
        "max_concurrent": CALLS,
        "start_method": {"forkserver": {"preload_modules": ["bench.bench_planner"]}},
    }
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer() as simulator:
        workdir = Path(tmp)
        os.environ[_DIR_ENV] = str(workdir)
        os.environ[_URL_ENV] = simulator.base_url
        steps, wall = _measure(workdir, 1, executor)
        batched, _ = _measure(workdir, BATCHED, executor)
    assert len(steps) == CALLS, f"expected {CALLS} mapped steps, saw {len(steps)}"
    assert len(batched) == CALLS // BATCHED
    stage = _stage(steps)
    startup = [s["STEP_START"] - s["STEP_WORKER_STARTING"] for s in steps.values()]
    overhead = [s["STEP_SUCCESS"] - s["STEP_START"] - TOOL_SECONDS for s in steps.values()]
    return {
        "planner_parallel_speedup": round(CALLS * TOOL_SECONDS / stage, 2),
        "planner_mapped_stage_s": round(stage, 2),
        "planner_step_startup_s": round(sum(startup) / len(startup), 2),
        "planner_step_overhead_s": round(sum(overhead) / len(overhead), 2),
        "planner_run_wall_s": round(wall, 1),
        "planner_batched_speedup": round(CALLS * TOOL_SECONDS / _stage(batched), 2),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name}: {value}")
