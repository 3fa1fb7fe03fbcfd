"""A PostgreSQL restart in the middle of a step: the step succeeds and pays for each row once.

This test RESTARTS the local PostgreSQL server (``pg_ctlcluster ... stop``, then ``start`` once
the step's writer has met the outage), cutting every connection to it, so it lives alone in
this file: run it on its own, never while other PostgreSQL tests run. It needs root and the
Debian ``pg_ctlcluster`` wrapper, else it skips.

The ledger is on PostgreSQL; the Dagster instance is on SQLite, so the restart reaches only
the ledger. The simulator's latency stretches the step over several seconds; the restart
begins once a quarter of the rows are paid, and answers keep arriving while the server is
down. Paid requests are counted by the simulator.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.simulator import SimulatorServer
from tests.conftest import PG_ADMIN_DSN, make_resources
from tests.test_llm_asset import REGIONS, make_task

pytestmark = [pytest.mark.postgres, pytest.mark.serial, pytest.mark.timeout(300)]

ROWS = 600


def _cluster_command(action: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL with pg_ctlcluster needs root")
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not clusters.is_dir():
        pytest.skip("pg_ctlcluster (Debian's postgresql-common) is not installed")
    (version,) = sorted(p.name for p in clusters.iterdir())
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]


def _admin(statement: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def ledger_url() -> Iterator[str]:
    """A fresh database; dropped over a new connection, since the restart cuts old ones."""
    try:
        _admin("SELECT 1")
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 ({exc})")
    name = f"llm_assets_restart_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        deadline = time.monotonic() + 60
        while True:
            try:
                _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _texts() -> dg.AssetsDefinition:
    @dg.asset(name="texts", partitions_def=REGIONS)
    def texts() -> pd.DataFrame:
        return pd.DataFrame(
            {"id": range(ROWS), "text": [f"message {i}: the parcel was late" for i in range(ROWS)]}
        )

    return texts


def _materialize(resources: dict[str, Any], instance: dg.DagsterInstance) -> Any:
    source = _texts()
    return dg.materialize(
        [source, llm_asset(make_task(), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def _eventually(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_postgres_restart_mid_step_fails_nothing_and_pays_each_row_once(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    ledger_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop, start = _cluster_command("stop"), _cluster_command("start")
    simulator.configure(latency_ms=250.0)  # 600 rows over 16 senders: about 10 s of sending
    resources = make_resources(simulator, tmp_path)
    resources["ledger"] = ResponseLedger(
        backend="postgres", postgres_url=ledger_url, journal_dir=str(tmp_path / "journal")
    )
    outcome: dict[str, Any] = {}

    def step() -> None:
        outcome["result"] = _materialize(resources, sqlite_instance)

    def paid() -> int:
        return int(simulator.stats()["chat_completions"])

    caplog.set_level(logging.WARNING, logger="llm_assets.resources.ledger")
    runner = threading.Thread(target=step)
    runner.start()
    _eventually(lambda: paid() >= ROWS // 4, timeout_s=120)
    before = paid()
    started = time.monotonic()
    subprocess.run(stop, check=True, capture_output=True, timeout=120)
    try:
        # Down until the step's writer has met the outage: a restart quicker than the writer's
        # next flush would prove nothing.
        _eventually(lambda: any("keeping" in r.getMessage() for r in caplog.records), 60)
    finally:
        subprocess.run(start, check=True, capture_output=True, timeout=120)
    outage_s = time.monotonic() - started
    during = paid() - before
    runner.join(timeout=240)
    assert not runner.is_alive()

    result = outcome["result"]
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert before < ROWS and during > 0  # the restart fell mid-step, and answers kept coming
    kept = [r.getMessage() for r in caplog.records if "keeping" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
    assert kept, "no answer met the outage: the restart missed the step's writes"
    assert back, "the writer never saw the ledger come back"
    assert paid() == ROWS
    ledger = ResponseLedger(backend="postgres", postgres_url=ledger_url)
    try:
        assert ledger.count() == ROWS
    finally:
        ledger.get_backend().close()

    again = _materialize(resources, sqlite_instance)
    assert again.success
    assert paid() == ROWS  # the rerun pays for nothing: every answer reached the ledger
    print(
        f"\nrestart: {ROWS} requests needed, {paid()} paid; {before} paid before the restart, "
        f"{during} answered during it ({outage_s:.1f}s)\n{kept[0]}\n{back[-1]}"
    )
