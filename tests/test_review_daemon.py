"""The daemon's review sensor across crashes: a killed daemon, a lost cursor, one reviewed run.

``dagster-daemon run`` on a Postgres instance (the repository's ``dagster.yaml``) serves a code
location with a review gate. The daemon is killed with SIGKILL between two decisions and
started again: the reviewed partition gets one run, launched by itself once the last row is
decided. Then the sensor's cursor is deleted, as if every tick had died before saving it: the
sensor requests the round again, and Dagster's run-key check launches nothing.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from llm_assets import ReviewDesk
from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT, fresh_postgres_database
from tests.daemon_support import BIN, SIMULATED_RESOURCES, DaemonProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SENSOR = "labels_review_sensor"
DEFS = (
    """
import dagster as dg
import pandas as pd
from pydantic import BaseModel
from llm_assets import (
    LLMResource, LLMTask, ParquetIOManager, ResponseLedger, ReviewPolicy, llm_asset,
    reviewed_asset,
)
from llm_assets.sensors import review_sensor

PARTS = dg.StaticPartitionsDefinition(["eu"])


class Label(BaseModel):
    label: str


@dg.asset(partitions_def=PARTS)
def texts() -> pd.DataFrame:
    return pd.DataFrame({{"id": [1, 2, 3, 4], "text": ["late", "broken", "fine", "great"]}})


labels = llm_asset(
    LLMTask(name="labels", user_prompt="{{text}}", output_schema=Label, id_column="id"),
    upstream=texts,
    review=ReviewPolicy(when=lambda row: "first two" if int(row["id"]) <= 2 else None),
)
labels_reviewed = reviewed_asset(labels)
defs = dg.Definitions(
    assets=[texts, labels, labels_reviewed],
    sensors=[review_sensor([labels_reviewed], name={sensor!r}, minimum_interval_seconds=1)],
    executor=dg.in_process_executor,  # one process per run: fewer imports on a busy machine
    resources="""
    + SIMULATED_RESOURCES
    + """,
)
"""
)


class Daemon(DaemonProcess):
    """The daemon, and the review sensor's ticks as its log counts them."""

    def ticks(self) -> int:
        """Evaluations of the review sensor so far (the daemon logs one line per tick)."""
        text = self.log.read_text() if self.log.exists() else ""
        return text.count(f"Checking for new runs for sensor: {SENSOR}")

    def wait_for_ticks(self, count: int, timeout_s: float = 120.0) -> None:
        """Waits for ``count`` more ticks than now."""
        target = self.ticks() + count
        self.wait_until(lambda: self.ticks() >= target, f"{count} ticks of {SENSOR}", timeout_s)


@pytest.fixture
def location(tmp_path: Path, simulator: SimulatorServer) -> Iterator[tuple[Daemon, dg.Definitions]]:
    """The code location, its Postgres instance and a (stopped) daemon; the daemon is killed
    on the way out."""
    (tmp_path / "defs.py").write_text(
        DEFS.format(
            sensor=SENSOR,
            base_url=simulator.base_url,
            ledger=str(tmp_path / "ledger.sqlite"),
            data=str(tmp_path / "data"),
        )
    )
    spec = importlib.util.spec_from_file_location("review_daemon_defs", tmp_path / "defs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    home = tmp_path / "home"
    home.mkdir()
    # The repository's instance config, with the run queue read every second, not every 5.
    config = (REPO_ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(
        config.replace(
            "max_concurrent_runs: 8", "max_concurrent_runs: 8\n    dequeue_interval_seconds: 1"
        )
    )
    with fresh_postgres_database("llm_assets_review_daemon") as url:
        env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": url}
        env["DAGSTER_TELEMETRY_DISABLED"] = "1"
        daemon = Daemon(tmp_path, env, ["-f", str(tmp_path / "defs.py"), "-d", str(tmp_path)])
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_PG_URL", url)
            mp.setenv("DAGSTER_HOME", str(home))
            try:
                yield daemon, module.defs
            finally:
                daemon.stop(signal.SIGKILL)


def reviewed_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR})))


@pytest.mark.timeout(600)
def test_a_daemon_killed_between_two_decisions_launches_one_reviewed_run(
    location: tuple[Daemon, dg.Definitions], tmp_path: Path
) -> None:
    daemon, defs = location
    instance = dg.DagsterInstance.get()
    try:
        gate = dg.materialize(
            [defs.get_assets_def("texts"), defs.get_assets_def("labels")],
            partition_key="eu",
            instance=instance,
            resources=dict(defs.resources),
        )
        assert gate.success
        desk = ReviewDesk.of(defs)
        first, second = desk.items("labels", "eu")
        assert {first.row_id, second.row_id} == {"1", "2"}

        daemon.start()
        desk.approve(first.item_id, reviewer="ana")
        daemon.wait_for_ticks(2)  # one row still waits: nothing launched
        assert reviewed_runs(instance) == []

        daemon.stop(signal.SIGKILL)  # a crash: the tick in flight, if any, dies with it
        desk.reject(second.item_id, reviewer="bo", reason="not a label we use")
        daemon.start()
        daemon.wait_until(lambda: len(reviewed_runs(instance)) == 1, "reviewed run")
        (run,) = reviewed_runs(instance)
        done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
        daemon.wait_until(
            lambda: instance.get_run_by_id(run.run_id).status in done,  # type: ignore[union-attr]
            "end of the reviewed run",
        )
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
        daemon.wait_for_ticks(3)
        assert len(reviewed_runs(instance)) == 1

        # The cursor is lost, as if every tick had died before saving it: the sensor asks for
        # the round again under the same run key, and the daemon launches nothing.
        daemon.stop()
        subprocess.run(
            [str(BIN / "dagster"), "sensor", "cursor", SENSOR, "--delete", *daemon.location],
            cwd=tmp_path, env=daemon.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        daemon.start()
        skipped = f"Skipping 1 run for sensor {SENSOR} already completed with run keys"
        daemon.wait_until(lambda: skipped in daemon.log.read_text(), "re-request of the round")
        assert len(reviewed_runs(instance)) == 1
    finally:
        daemon.stop(signal.SIGKILL)
        instance.dispose()

    data = tmp_path / "data"
    out = pd.read_parquet(data / "labels_reviewed" / "eu.parquet")
    assert sorted(out["id"]) == [1, 3, 4]
    assert out.set_index("id").loc[1, "reviewed_by"] == "ana"
    rejected = pd.read_parquet(data / "labels_reviewed_quarantine" / "eu.parquet")
    assert rejected[["id", "reason", "rejected_by"]].values.tolist() == [
        [2, "not a label we use", "bo"]
    ]
