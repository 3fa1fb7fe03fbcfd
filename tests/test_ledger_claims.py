"""Request claims: steps that miss the same request at once pay for it once, and a dead
claimer blocks nothing past its lease. SQLite and Postgres pass the same tests."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg2
import pytest

from llm_assets.resources.ledger import (
    LedgerBackend,
    LedgerConfigError,
    PostgresLedgerBackend,
    RequestClaims,
    ResponseLedger,
    SQLiteLedgerBackend,
    claim_owner,
)
from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT, TEST_API_KEY, fresh_postgres_database
from tests.forked import ForkedProcess, start
from tests.ledger_pipeline import MAIN, rows_for
from tests.test_ledger import make_entry

WAITING = "waiting for"


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``sqlite:<path>`` or a fresh Postgres database URL (skipped without a server)."""
    if request.param == "sqlite":
        yield f"sqlite:{tmp_path / 'ledger.sqlite'}"
        return
    with fresh_postgres_database() as url:
        yield url


def open_backend(spec: str) -> LedgerBackend:
    if spec.startswith("sqlite:"):
        return SQLiteLedgerBackend(spec.removeprefix("sqlite:"))
    return PostgresLedgerBackend(spec)


@pytest.fixture
def backend(ledger_spec: str) -> Iterator[LedgerBackend]:
    opened = open_backend(ledger_spec)
    yield opened
    opened.close()


def claims_held(spec: str) -> int:
    """Rows in the claims table, read with the database's own driver."""
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not Path(path).exists():
            return 0
        with sqlite3.connect(path) as conn:
            try:
                return conn.execute("SELECT COUNT(*) FROM request_claims").fetchone()[0]
            except sqlite3.OperationalError:
                return 0
    conn = psycopg2.connect(spec.replace("postgresql+psycopg2", "postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('llm_assets.request_claims')")
            if cur.fetchone()[0] is None:
                return 0
            cur.execute("SELECT COUNT(*) FROM llm_assets.request_claims")
            return cur.fetchone()[0]
    finally:
        conn.close()


KEYS = [make_entry(i).key for i in range(300)]


def test_of_two_owners_only_the_first_wins_a_key(backend: LedgerBackend) -> None:
    assert backend.claim_many(KEYS[:200], "a", 60) == set(KEYS[:200])
    assert backend.claim_many(KEYS, "b", 60) == set(KEYS[200:])
    assert backend.claim_many(KEYS[:10], "a", 60) == set(KEYS[:10])  # its own: renewed


def test_answered_requests_are_never_claimed(backend: LedgerBackend) -> None:
    backend.put_many([make_entry(i) for i in range(5)])
    assert backend.claim_many(KEYS[:10], "a", 60) == set(KEYS[5:10])


def test_an_expired_lease_can_be_claimed_by_another_owner(backend: LedgerBackend) -> None:
    assert backend.claim_many(KEYS[:3], "dead", 0.3) == set(KEYS[:3])
    assert backend.claim_many(KEYS[:3], "alive", 60) == set()
    time.sleep(0.6)
    assert backend.claim_many(KEYS[:3], "alive", 60) == set(KEYS[:3])


def test_renewal_keeps_and_release_frees_a_claim(backend: LedgerBackend) -> None:
    backend.claim_many(KEYS[:3], "a", 0.3)
    assert backend.renew_claims("a", 60) == 3
    time.sleep(0.6)
    assert backend.claim_many(KEYS[:3], "b", 60) == set()
    backend.release_claims("a")
    assert backend.claim_many(KEYS[:3], "b", 60) == set(KEYS[:3])


def test_threads_racing_for_the_same_keys_split_them(backend: LedgerBackend) -> None:
    won: dict[int, set[str]] = {}
    start = threading.Barrier(6)

    def race(n: int) -> None:
        start.wait()
        won[n] = backend.claim_many(list(reversed(KEYS)) if n % 2 else KEYS, f"o{n}", 60)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(len(keys) for keys in won.values()) == len(KEYS)
    assert set().union(*won.values()) == set(KEYS)


def test_request_claims_renew_in_the_background_and_release_on_exit(
    backend: LedgerBackend,
) -> None:
    with RequestClaims(backend, claim_owner("run-a"), lease_s=0.6) as claims:
        assert claims.claim(KEYS[:4]) == set(KEYS[:4])
        time.sleep(1.5)  # over two leases: only renewal keeps the claims
        assert backend.claim_many(KEYS[:4], "other", 60) == set()
    assert backend.claim_many(KEYS[:4], "other", 60) == set(KEYS[:4])


def test_lease_must_be_positive_and_zero_turns_claims_off(tmp_path: Path) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "l.sqlite"), claim_lease_s=0)
    assert ledger.claims("x") is None
    with pytest.raises(LedgerConfigError, match="lease_s"):
        RequestClaims(ledger.get_backend(), "x", 0)
    ledger.get_backend().close()


# --- Dagster runs in separate processes, racing on one ledger --------------------------------


def _env(
    tmp_path: Path, name: str, simulator: SimulatorServer, spec: str, **extra: str
) -> dict[str, str]:
    home = tmp_path / name / "home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        TEST_SIM_URL=simulator.base_url,
        TEST_LEDGER=spec,
        TEST_DATA_DIR=str(tmp_path / name / "data"),
        TEST_API_KEY=TEST_API_KEY,
        **extra,
    )
    return env


def _start(env: dict[str, str]) -> ForkedProcess:
    """A run of partition ``p1`` in a process of its own, its output beside its home."""
    folder = Path(env["DAGSTER_HOME"]).parent
    return start(MAIN, "p1", env=env, cwd=REPO_ROOT, logs=folder / "run")


def _table(tmp_path: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / name / "data" / "doc_summaries" / "p1.parquet")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_runs_racing_on_the_same_rows_pay_for_each_request_once(
    simulator: SimulatorServer, tmp_path: Path, ledger_spec: str
) -> None:
    rows = 200
    # 200 requests at 0.2 s, 8 at a time: the first run sends for about 5 s, so the second
    # reaches its claims while the first still holds them even on a loaded machine.
    simulator.configure(latency_ms=200)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    common = {
        "TEST_ROWS": str(rows),
        "TEST_BARRIER_DIR": str(barrier),
        "TEST_BARRIER_COUNT": "2",
        "TEST_CLAIM_POLL_S": "0.2",
    }
    procs = {
        name: _start(_env(tmp_path, name, simulator, ledger_spec, **common)) for name in ("a", "b")
    }
    statuses = {name: proc.wait(timeout_s=240) for name, proc in procs.items()}
    outputs = {name: proc.output() for name, proc in procs.items()}
    for name in procs:
        assert statuses[name] == 0, outputs[name][-4000:]

    assert simulator.stats()["chat_completions"] == rows
    assert any(WAITING in output for output in outputs.values()), "the runs did not race"
    expected = set(rows_for("p1", rows)["doc_id"])
    for name in procs:
        table = _table(tmp_path, name)
        assert len(table) == rows and set(table["doc_id"]) == expected
        assert (table["llm_status"] == "ok").all()
    assert claims_held(ledger_spec) == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_claimer_blocks_its_rows_only_until_its_lease_runs_out(
    simulator: SimulatorServer, tmp_path: Path, ledger_spec: str
) -> None:
    rows, concurrency, lease_s = 40, 4, 15
    simulator.configure(latency_ms=30_000)  # the first run's requests never come back
    go = tmp_path / "go"
    go.mkdir()
    doomed = _start(
        _env(
            tmp_path,
            "doomed",
            simulator,
            ledger_spec,
            TEST_ROWS=str(rows),
            TEST_CONCURRENCY=str(concurrency),
            TEST_CLAIM_LEASE_S=str(lease_s),
        )
    )
    # Started now so that its start-up overlaps the first run's; it waits for `go` (its own
    # file there says it is ready).
    survivor = _start(
        _env(
            tmp_path,
            "survivor",
            simulator,
            ledger_spec,
            TEST_ROWS=str(rows),
            TEST_BARRIER_DIR=str(go),
            TEST_BARRIER_COUNT="2",
            TEST_CLAIM_POLL_S="0.2",
        )
    )
    try:
        deadline = time.monotonic() + 180
        # Killed once it holds every claim and the second run is ready to go at once.
        while claims_held(ledger_spec) < rows or not any(go.iterdir()):
            assert doomed.poll() is None, doomed.output()[-4000:]
            assert survivor.poll() is None, survivor.output()[-4000:]
            assert time.monotonic() < deadline, "the first run never claimed its rows"
            time.sleep(0.1)
        os.kill(doomed.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert doomed.wait(timeout_s=30) == -signal.SIGKILL
        simulator.configure(latency_ms=5)
        (go / "go").touch()
        status = survivor.wait(timeout_s=240)
        output = survivor.output()
    finally:
        for proc in (doomed, survivor):
            if proc.poll() is None:
                proc.kill()
    finished_after_s = time.monotonic() - killed_at

    assert status == 0, output[-4000:]
    assert WAITING in output, "the second run never met the dead run's claims"
    table = _table(tmp_path, "survivor")
    assert len(table) == rows and (table["llm_status"] == "ok").all()
    assert not table["llm_cached"].any()  # the dead run paid for nothing that landed
    # Only the dead run's requests in flight were sent twice.
    assert rows <= simulator.stats()["chat_completions"] <= rows + concurrency
    assert finished_after_s < lease_s + 120
    assert claims_held(ledger_spec) == 0
