"""``python -m reviews_example demo`` (``make demo``): the example pipeline against the simulator.

``demo`` materializes one partition of the whole example pipeline, then ``llm_spend``, on the
embedded SQLite instance in ``$DAGSTER_HOME`` (default ``./.dagster_home``) and prints what it
produced and the command that traces one of its rows. The UI is the library's own launcher,
``python -m llm_assets ui`` (``make ui``), on the workspace that names this code location.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from llm_assets.simulator import PortInUseError, SimulatorConfig, SimulatorProcess
from llm_assets.ui import prepare_local_home

DEFAULT_SIMULATOR_PORT = 8765
#: The code location the printed ``trace`` command loads.
DEFINITIONS_MODULE = "reviews_example.definitions"


def start_simulator(latency_ms: float = 20.0) -> SimulatorProcess:
    """Starts the simulator in a subprocess and points ``LLM_ASSETS_BASE_URL`` at it.

    It takes port 8765, or any free port when another process holds that one (checked by
    binding, so two demos started at once cannot both be told it is free).
    """
    config = SimulatorConfig(latency_ms=latency_ms, latency_jitter=0.3)
    simulator = SimulatorProcess(config, host="127.0.0.1", port=DEFAULT_SIMULATOR_PORT)
    try:
        simulator.start()
    except PortInUseError:
        simulator = SimulatorProcess(config, host="127.0.0.1", port=0)
        simulator.start()
    os.environ["LLM_ASSETS_BASE_URL"] = simulator.base_url
    return simulator


def trace_command(partition: str, row_id: str) -> str:
    """The ``trace`` command for a row the demo wrote, runnable as is in a fresh shell here.

    It names the code location and repeats the settings a fresh shell would lack: a
    ``DAGSTER_HOME`` other than ``./.dagster_home`` and any data or ledger location.

    Args:
        partition: The partition the demo materialized.
        row_id: A ``review_id`` of that partition.

    Returns:
        One shell command line.

    Examples:
        From the repository root after ``make demo``::

            >>> print(trace_command("2026-11-01", "2026-11-01-0000"))  # doctest: +SKIP
            .venv/bin/python -m llm_assets trace review_insights --module-name \
reviews_example.definitions --partition 2026-11-01 --row 2026-11-01-0000
    """
    cwd = Path.cwd()
    settings = []
    home = os.environ.get("DAGSTER_HOME")
    if home and Path(home).resolve() != (cwd / ".dagster_home").resolve():
        settings.append(f"DAGSTER_HOME={shlex.quote(str(Path(home).resolve()))}")
    for name in ("LLM_ASSETS_DATA_DIR", "LLM_ASSETS_LEDGER_PATH"):
        if os.environ.get(name):
            settings.append(f"{name}={shlex.quote(str(Path(os.environ[name]).resolve()))}")
    python = Path(sys.executable)
    if python.is_relative_to(cwd):
        python = python.relative_to(cwd)
    command = [
        *settings,
        shlex.quote(str(python)),
        f"-m llm_assets trace review_insights --module-name {DEFINITIONS_MODULE}",
        f"--partition {shlex.quote(partition)} --row {shlex.quote(row_id)}",
    ]
    return " ".join(command)


def _metadata(instance: dg.DagsterInstance, key: str) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def run_demo(partition: str) -> int:
    """Materializes ``partition`` of the example pipeline and prints a summary.

    Returns:
        A process exit code.
    """
    home = prepare_local_home()
    simulator = start_simulator()
    try:
        from reviews_example.definitions import build_definitions

        defs = build_definitions("local")
        job = defs.resolve_job_def("nightly_enrichment")
        instance = dg.DagsterInstance.get()
        print(
            f"materializing partition {partition} of the example pipeline "
            f"(simulator at {simulator.base_url}; answers are placeholders)"
        )
        quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        result = job.execute_in_process(
            partition_key=partition, instance=instance, raise_on_error=False, run_config=quiet
        )
        # The spend page in the UI reads the ledger the run just filled.
        spend = defs.resolve_job_def("llm_spend_refresh").execute_in_process(
            instance=instance, raise_on_error=False, run_config=quiet
        )
        data_dir = Path(os.environ.get("LLM_ASSETS_DATA_DIR", "data")).resolve()
        print(f"\nrun {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
        if not spend.success:
            print(f"run {spend.run_id} (llm_spend_refresh): FAILURE")
        total_cost = 0.0
        for key in ("review_insights", "daily_digest"):
            meta = _metadata(instance, key)
            total_cost += float(meta.get("cost_usd", 0.0))
            print(
                f"  {key:16} rows={meta.get('rows')} ok={meta.get('ok')} "
                f"failed={meta.get('failed')} requests={meta.get('requests_sent')} "
                f"cache_hits={meta.get('cache_hits')} tokens={meta.get('tokens')} "
                f"saved=${float(meta.get('saved_usd', 0.0)):.4f} "
                f"cost=${float(meta.get('cost_usd', 0.0)):.4f}"
            )
        print(f"  total new spend: ${total_cost:.4f} (simulated prices)")
        print(f"\nParquet files: {data_dir}/<asset>/{partition}.parquet")
        print(f"Dagster instance (SQLite): {home}")
        print("Open the UI: make ui  ->  http://127.0.0.1:3000")
        print(f"Trace a row: {trace_command(partition, f'{partition}-0000')}")
        return 0 if result.success and spend.success else 1
    finally:
        simulator.stop()
