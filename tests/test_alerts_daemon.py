"""The daemon evaluates the LLM failure sensor on a run it launched, and the alert goes out."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llm_assets.simulator import SimulatorServer
from tests.daemon_support import BIN, SIMULATED_RESOURCES, DaemonProcess

DAEMON_DEFS = (
    """
import json
import dagster as dg
import pandas as pd
from pydantic import BaseModel
from llm_assets import LLMResource, LLMTask, ParquetIOManager, ResponseLedger, llm_asset
from llm_assets.sensors.alerts import llm_failure_sensor


class Label(BaseModel):
    label: str


@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["eu"]))
def texts() -> pd.DataFrame:
    return pd.DataFrame({{"id": [1, 2], "text": ["fine", "broken"]}})


def record(alert):
    with open({alerts!r}, "a") as out:
        out.write(json.dumps({{"assets": alert.assets, "partition": alert.partition,
                              "error_class": alert.error_class}}) + "\\n")


labels = llm_asset(
    LLMTask(name="labels", user_prompt="{{text}}", output_schema=Label, id_column="id"),
    upstream=texts,
    max_cost_usd=0.0,  # refused before sending: the run fails with BudgetExceededError
)
defs = dg.Definitions(
    assets=[texts, labels],
    jobs=[dg.define_asset_job("label_job", selection=["texts", "labels"])],
    executor=dg.in_process_executor,  # one process per run: fewer imports on a busy machine
    sensors=[llm_failure_sensor(record, minimum_interval_seconds=1,
                                default_status=dg.DefaultSensorStatus.RUNNING)],
    resources="""
    + SIMULATED_RESOURCES
    + """,
)
"""
)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_daemon_sends_the_alert_of_a_failed_run(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    alerts = tmp_path / "alerts.jsonl"
    (tmp_path / "defs.py").write_text(
        DAEMON_DEFS.format(
            alerts=str(alerts),
            base_url=simulator.base_url,
            ledger=str(tmp_path / "ledger.sqlite"),
            data=str(tmp_path / "data"),
        )
    )
    # The daemon and the command line load the same file: one code location, as in a deployment.
    location = ["-f", str(tmp_path / "defs.py"), "-d", str(tmp_path)]
    daemon = DaemonProcess(tmp_path, {**os.environ, "DAGSTER_HOME": str(home)}, location)
    daemon.start()
    try:
        # A run-failure sensor starts from the failures after its first tick.
        daemon.wait_until(lambda: "llm_failure_alerts" in daemon.log.read_text(), "sensor tick")
        # Launched like the UI does: queued, then started by the daemon in the code location.
        subprocess.run(
            [str(BIN / "dagster"), "job", "launch", *location, "-j", "label_job",
             "--tags", json.dumps({"dagster/partition": "eu"})],
            cwd=tmp_path, env=daemon.env, capture_output=True, text=True, timeout=240,
            check=True,
        )  # fmt: skip
        daemon.wait_until(alerts.exists, "alert sent")
    finally:
        daemon.stop()
    (alert,) = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert alert == {"assets": ["labels"], "partition": "eu", "error_class": "BudgetExceededError"}
