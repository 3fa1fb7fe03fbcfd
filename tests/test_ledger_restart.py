"""A PostgreSQL restart in the middle of a step: the step succeeds and pays for each row once.

The ledger is on a PostgreSQL server of the test's own (``tests/postgres_server.py``): it is
stopped (``pg_ctl stop -m fast``, as a service restart does, cutting every connection) and
started again once the step's writer has met the outage. The Dagster instance is on SQLite, so
the restart reaches only the ledger. The simulator's latency stretches the step over several
seconds; the restart begins once a quarter of the rows are paid, and answers keep arriving while
the server is down. Paid requests are counted by the simulator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources
from tests.postgres_server import PostgresServer, postgres_server
from tests.test_llm_asset import REGIONS, make_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROWS = 600


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


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
    server: PostgresServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator.configure(latency_ms=250.0)  # 600 rows over 16 senders: about 10 s of sending
    resources = make_resources(simulator, tmp_path)
    resources["ledger"] = ResponseLedger(
        backend="postgres", postgres_url=server.url, journal_dir=str(tmp_path / "journal")
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
    server.stop()
    try:
        # Down until the step's writer has met the outage: a restart quicker than the writer's
        # next flush would prove nothing.
        _eventually(lambda: any("keeping" in r.getMessage() for r in caplog.records), 60)
    finally:
        server.start()
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
    ledger = ResponseLedger(backend="postgres", postgres_url=server.url)
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
