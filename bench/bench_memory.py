"""Peak memory of an ``llm_asset`` step: fully cached at 100k and 1M rows, live at 100k rows.

Each figure is the peak resident set (``VmHWM``) of a fresh Python process that runs one
``dg.materialize`` of the ``tags`` asset (small rows: a 7-character id and a ~50-character
text) on a SQLite Dagster instance, its upstream already on disk as Parquet. A separate
process prepares that upstream and, for the cached cases, fills the SQLite ledger with one
schema-valid answer per request (paying the simulator for 1M calls would only measure the
simulator), so neither the preparation nor the simulator counts. The live case sends every
request to a ``SimulatorProcess`` without latency. ``*_baseline_rss_mb`` is the same process
with everything imported and the definitions loaded but nothing materialized: the floor that
Python, Dagster, pandas and pyarrow take whatever the data.

Run one case by hand: ``python -m bench.bench_memory cached 100000``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from bench.bench_ledger import PARTS, TASK, fill_ledger
from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager

FILL_CHUNK = 50_000
REPO_ROOT = Path(__file__).resolve().parent.parent


def tickets_frame(rows: int, start: int = 0) -> pd.DataFrame:
    """``rows`` small tickets, numbered from ``start``."""
    numbers = range(start, start + rows)
    return pd.DataFrame(
        {
            "ticket_id": [f"t{i:07d}" for i in numbers],
            "text": [f"printer on floor {i % 40} jams when printing page {i}" for i in numbers],
        }
    )


@dg.asset(partitions_def=PARTS)
def tickets() -> pd.DataFrame:
    """The benchmark's input rows (``BENCH_MEMORY_ROWS`` of them)."""
    return tickets_frame(int(os.environ["BENCH_MEMORY_ROWS"]))


tags = llm_asset(TASK, upstream=tickets)


def _resources(workdir: Path, base_url: str) -> dict[str, Any]:
    return {
        "llm": LLMResource(
            base_url=base_url, api_key="sk-bench-memory", model="sim-small", max_concurrency=64
        ),
        "ledger": ResponseLedger(backend="sqlite", sqlite_path=str(workdir / "ledger.sqlite")),
        "io_manager": ParquetIOManager(base_dir=str(workdir / "data")),
    }


def _fill(ledger: ResponseLedger, rows: int) -> None:
    for start in range(0, rows, FILL_CHUNK):
        frame = tickets_frame(min(FILL_CHUNK, rows - start), start)
        fill_ledger(ledger, frame, first=start, chunk=FILL_CHUNK)


def _prepare(workdir: Path, rows: int, fill: bool) -> None:
    """Child process: the upstream table on disk and, when ``fill``, every answer in the ledger."""
    resources = _resources(workdir, "http://127.0.0.1:9/v1")
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(workdir / "home")) as instance:
        dg.materialize([tickets], partition_key="day", resources=resources, instance=instance)
    if fill:
        _fill(resources["ledger"], rows)


def _peak_rss_mb() -> float:
    """This process's peak resident memory since its program started.

    Not ``ru_maxrss``: Linux carries that over ``exec`` from the process that forked this one,
    so a child of a large benchmark process would report its parent's size.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _materialize(workdir: Path, base_url: str, baseline_only: bool) -> dict[str, float]:
    """Child process: one materialization of ``tags``; its peak RSS and wall time."""
    resources = _resources(workdir, base_url)
    dg.Definitions(assets=[tickets, tags], resources=resources)
    baseline = _peak_rss_mb()
    if baseline_only:
        return {"peak_rss_mb": baseline}
    with dg.instance_for_test(temp_dir=str(workdir / "home")) as instance:
        started = time.perf_counter()
        result = dg.materialize(
            [tickets, tags],
            selection=[tags],
            partition_key="day",
            resources=resources,
            instance=instance,
        )
        wall = time.perf_counter() - started
    assert result.success
    return {
        "peak_rss_mb": _peak_rss_mb(),
        "wall_s": wall,
    }


def _child(*args: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_memory", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(mode: str, rows: int) -> dict[str, float]:
    """Peak RSS (MB) of one materialization: ``mode`` is ``cached`` or ``live``."""
    from llm_assets.simulator import SimulatorConfig, SimulatorProcess

    with tempfile.TemporaryDirectory() as tmp:
        _child("prepare", tmp, str(rows), "1" if mode == "cached" else "0")
        with SimulatorProcess(SimulatorConfig()) as sim:
            figures = _child("materialize", tmp, str(rows), sim.base_url)
            figures["requests_sent"] = float(sim.stats()["requests_total"])
    if mode == "cached" and figures["requests_sent"]:
        raise RuntimeError(f"the cached run sent {figures['requests_sent']:.0f} requests")
    if mode == "live" and figures["requests_sent"] < rows:
        raise RuntimeError(f"the live run sent {figures['requests_sent']:.0f} of {rows}")
    return figures


def run() -> dict[str, float]:
    """Peak RSS of cached runs at 100k and 1M rows and of a live run at 100k rows."""
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        _child("prepare", tmp, "10", "0")
        baseline = _child("materialize", tmp, "10", "http://127.0.0.1:9/v1", "baseline")
    figures = {"baseline_rss_mb": baseline["peak_rss_mb"]}
    for mode, rows, name in (
        ("cached", 100_000, "cached_peak_rss_mb_100k_rows"),
        ("cached", 1_000_000, "cached_peak_rss_mb_1m_rows"),
        ("live", 100_000, "live_peak_rss_mb_100k_rows"),
    ):
        measured = measure(mode, rows)
        figures[name] = measured["peak_rss_mb"]
        figures[name.replace("peak_rss_mb", "rows_per_s")] = rows / measured["wall_s"]
    return figures


def main(argv: list[str]) -> int:
    """``prepare DIR ROWS FILL`` | ``materialize DIR ROWS URL [baseline]`` | ``MODE ROWS``."""
    warnings.filterwarnings("ignore")
    command = argv[0]
    if command in ("cached", "live"):
        print(json.dumps(measure(command, int(argv[1]))))
        return 0
    workdir, rows = Path(argv[1]), argv[2]
    os.environ["BENCH_MEMORY_ROWS"] = rows
    if command == "prepare":
        _prepare(workdir, int(rows), argv[3] == "1")
        print("{}")
    else:
        print(json.dumps(_materialize(workdir, argv[3], len(argv) > 4)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
