"""Batch records and submission claims: one contract, passed by SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from llm_assets.resources.batch import (
    BatchRecord,
    BatchStore,
    Claim,
    PostgresBatchStore,
    SQLiteBatchStore,
)
from llm_assets.resources.ledger import LedgerError, ResponseLedger

# Starting a process that imports dagster takes 2-15 s on a loaded 2-core machine.
PROCESS_TIMEOUT_S = 120
ASSET, PARTITION, VERSION = "review_insights", "2026-11-01", "v1"
T0 = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)


def request_keys(count: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"request-{salt}{i}".encode()).hexdigest() for i in range(count)]


def make_record(claim: Claim, batch_id: str | None = None, **overrides: Any) -> BatchRecord:
    fields: dict[str, Any] = {
        "batch_id": batch_id or f"batch_{uuid.uuid4().hex}",
        "asset_key": claim.asset_key,
        "partition_key": claim.partition_key,
        "task_version": claim.task_version,
        "state": "validating",
        "request_keys": request_keys(3, salt=batch_id or ""),
        "input_file_id": f"file-{uuid.uuid4().hex[:24]}",
        "output_file_id": None,
        "error_file_id": None,
        "submitted_by_run_id": claim.run_id,
        "attempt": 0,
        "created_at": T0,
        "updated_at": T0,
        "error": None,
    }
    fields.update(overrides)
    return BatchRecord(**fields)


def race_for_claim(store: BatchStore, partition: str, runs: list[str]) -> list[str]:
    """One thread per run claims ``partition`` at the same moment; returns the winners."""
    barrier = threading.Barrier(len(runs))
    won: list[str] = []

    def race(run_id: str) -> None:
        barrier.wait(timeout=PROCESS_TIMEOUT_S)
        claim = store.claim(ASSET, partition, VERSION, run_id)
        if claim is not None:
            won.append(claim.run_id)

    threads = [threading.Thread(target=race, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PROCESS_TIMEOUT_S)
    return won


def claim_in_another_process(
    config: dict[str, Any], process: int, threads: int, start_together: Any, results: Any
) -> None:
    """Runs in a child process: ``threads`` runs of another Dagster step race for one claim."""
    store = ResponseLedger(**config).batch_store()
    start_together.wait(timeout=PROCESS_TIMEOUT_S)
    try:
        results.put(
            race_for_claim(store, PARTITION, [f"run-p{process}-t{t}" for t in range(threads)])
        )
    finally:
        store.close()


def _clean_processes() -> Any:
    """Processes forked from a fresh interpreter that has imported this module once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([claim_in_another_process.__module__])
    return context


class BatchStoreContract:
    """Tests every backend must pass; subclasses provide ``new_ledger_config``."""

    @pytest.fixture
    def new_ledger_config(self) -> Callable[[], dict[str, Any]]:
        """Returns ResponseLedger settings for a new, empty database each time it is called."""
        raise NotImplementedError

    @pytest.fixture
    def ledger_config(self, new_ledger_config: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return new_ledger_config()

    @pytest.fixture
    def store(self, ledger_config: dict[str, Any]) -> Iterator[BatchStore]:
        store = ResponseLedger(**ledger_config).batch_store()
        yield store
        store.close()

    def claim(self, store: BatchStore, run_id: str = "run-a", **scope: Any) -> Claim:
        claim = store.claim(
            scope.get("asset_key", ASSET),
            scope.get("partition_key", PARTITION),
            scope.get("task_version", VERSION),
            run_id,
            lease_s=scope.get("lease_s", 600.0),
        )
        assert claim is not None, "the claim should have been granted"
        return claim

    def test_round_trip_keeps_every_field(self, store: BatchStore) -> None:
        paris = timezone(timedelta(hours=1))
        claim = self.claim(store)
        full = make_record(
            claim,
            "batch_full",
            state="completed",
            output_file_id="file-out",
            error_file_id="file-err",
            attempt=2,
            created_at=datetime(2026, 11, 1, 13, 0, 0, 5, tzinfo=paris),
            error="2 lines failed",
        )
        store.record(claim, [full])
        no_partition = self.claim(store, partition_key=None)
        bare = make_record(no_partition, "batch_bare")
        store.record(no_partition, [bare])

        stored = store.get("batch_full")
        assert stored == full
        assert stored is not None and stored.created_at == datetime(
            2026, 11, 1, 12, 0, 0, 5, tzinfo=UTC
        )
        assert stored.created_at.utcoffset() == timedelta(0)
        assert store.get("batch_bare") == bare
        assert store.get("batch_unknown") is None

    def test_one_claim_per_scope_until_its_batches_are_harvested(self, store: BatchStore) -> None:
        first = self.claim(store, "run-a")
        assert store.claim(ASSET, PARTITION, VERSION, "run-b") is None  # claimed

        records = [make_record(first), make_record(first)]  # one submission, split in two
        store.record(first, records)
        assert store.claim(ASSET, PARTITION, VERSION, "run-b") is None  # live batches
        assert store.claim(ASSET, PARTITION, VERSION, "run-a") is None  # even for the submitter
        assert {r.batch_id for r in store.live_for(ASSET, PARTITION, VERSION)} == {
            r.batch_id for r in records
        }

        for record in records:
            store.update(record.batch_id, state="failed", error="simulated")
        assert store.claim(ASSET, PARTITION, VERSION, "run-b") is None  # failed is still live
        assert store.mark_harvested(records[0].batch_id)
        assert store.claim(ASSET, PARTITION, VERSION, "run-b") is None  # one left
        assert store.mark_harvested(records[1].batch_id)

        resubmission = self.claim(store, "run-b")
        assert store.live_for(ASSET, PARTITION, VERSION) == []
        retry = make_record(resubmission, attempt=1, created_at=T0 + timedelta(hours=1))
        store.record(resubmission, [retry])
        history = store.history_for(ASSET, PARTITION, VERSION)
        assert [r.attempt for r in history] == [0, 0, 1]
        assert [r.state for r in history] == ["harvested", "harvested", "validating"]

    def test_scopes_are_independent(self, store: BatchStore) -> None:
        self.claim(store)
        self.claim(store, partition_key="2026-11-02")
        self.claim(store, partition_key=None)
        self.claim(store, task_version="v2")
        self.claim(store, asset_key="other")
        assert store.claim(ASSET, None, VERSION, "run-b") is None

    def test_release_lets_another_run_claim(self, store: BatchStore) -> None:
        first = self.claim(store, "run-a")
        store.release(first)
        self.claim(store, "run-b")

    def test_a_run_may_claim_its_own_scope_again(self, store: BatchStore) -> None:
        # A retried step of the same run must not wait for its own lease to lapse.
        first = self.claim(store, "run-a")
        again = self.claim(store, "run-a")
        assert again.token != first.token
        assert store.claim(ASSET, PARTITION, VERSION, "run-b") is None
        store.record(first, [make_record(first, "batch_from_first_try")])  # still stored
        assert store.get("batch_from_first_try") is not None

    def test_an_expired_claim_lets_a_second_claimer_in(
        self, store: BatchStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        crashed = self.claim(store, "run-a", lease_s=0.05)
        time.sleep(0.3)
        taker = self.claim(store, "run-b")
        assert taker.expires_at > datetime.now(UTC) + timedelta(seconds=500)

        # The first submitter was slow, not dead: its batch is kept, the take-over reported.
        with caplog.at_level(logging.WARNING):
            store.record(crashed, [make_record(crashed, "batch_late")])
        assert store.get("batch_late") is not None
        assert "run-b claimed it" in caplog.text
        assert store.claim(ASSET, PARTITION, VERSION, "run-c") is None

    def test_record_rejects_another_scope_and_is_idempotent(self, store: BatchStore) -> None:
        claim = self.claim(store)
        other = make_record(claim, partition_key="2026-11-09")
        with pytest.raises(ValueError, match="claim is for"):
            store.record(claim, [other])
        assert store.get(other.batch_id) is None

        record = make_record(claim, "batch_once")
        store.record(claim, [record])
        store.record(claim, [make_record(claim, "batch_once", state="completed")])
        assert store.get("batch_once") == record

    def test_update_and_harvest(self, store: BatchStore) -> None:
        claim = self.claim(store)
        store.record(claim, [make_record(claim, "batch_u")])

        assert store.update("batch_u", state="in_progress")
        assert store.update(
            "batch_u", state="completed", output_file_id="file-o", error_file_id="file-e"
        )
        assert store.update("batch_u", state="completed", error="3 of 3 lines failed")
        updated = store.get("batch_u")
        assert updated is not None
        assert (updated.state, updated.output_file_id, updated.error_file_id, updated.error) == (
            "completed",
            "file-o",
            "file-e",
            "3 of 3 lines failed",
        )
        assert updated.updated_at > T0 and updated.created_at == T0

        assert store.mark_harvested("batch_u")
        assert not store.mark_harvested("batch_u")
        assert not store.update("batch_u", state="completed")  # never live again
        harvested = store.get("batch_u")
        assert harvested is not None and harvested.state == "harvested" and not harvested.is_live
        assert not store.update("batch_unknown", state="failed")
        assert not store.mark_harvested("batch_unknown")
        with pytest.raises(ValueError, match="mark_harvested"):
            store.update("batch_u", state="harvested")
        with pytest.raises(ValueError, match="unknown batch state"):
            store.update("batch_u", state="done")

    def test_live_is_oldest_update_first_and_skips_harvested(self, store: BatchStore) -> None:
        names = ["a", "b", "c"]
        for hour, name in enumerate(names):
            claim = self.claim(store, partition_key=name)
            at = T0 + timedelta(hours=hour)
            store.record(claim, [make_record(claim, f"batch_{name}", created_at=at, updated_at=at)])
        assert [r.batch_id for r in store.live(limit=2)] == ["batch_a", "batch_b"]

        store.update("batch_a", state="in_progress")  # polled: to the back of the queue
        store.mark_harvested("batch_b")
        assert [r.batch_id for r in store.live()] == ["batch_c", "batch_a"]

    def test_records_survive_reopening(self, ledger_config: dict[str, Any]) -> None:
        keys = request_keys(50_000)  # a full batch
        with dg.build_resources({"ledger": ResponseLedger(**ledger_config)}) as resources:
            store = resources.ledger.batch_store()
            claim = self.claim(store)
            store.record(claim, [make_record(claim, "batch_kept", request_keys=keys)])
        with pytest.raises(LedgerError, match="closed"):
            store.get("batch_kept")  # the ledger's teardown closed its batch store

        reopened = ResponseLedger(**ledger_config).batch_store()
        try:
            kept = reopened.get("batch_kept")
            assert kept is not None and kept.request_keys == keys
            assert [r.batch_id for r in reopened.live()] == ["batch_kept"]
        finally:
            reopened.close()

    @pytest.mark.timeout(60)
    def test_eight_threads_racing_for_a_claim_get_exactly_one(self, store: BatchStore) -> None:
        for round_ in range(5):
            won = race_for_claim(store, f"race-{round_}", [f"run-{t}" for t in range(8)])
            assert len(won) == 1, f"round {round_}: {won}"

    @pytest.mark.timeout(2 * PROCESS_TIMEOUT_S)
    def test_two_processes_racing_for_a_claim_get_exactly_one(
        self, ledger_config: dict[str, Any], store: BatchStore
    ) -> None:
        context = _clean_processes()
        start_together, results = context.Barrier(2), context.Queue()
        processes = [
            context.Process(
                target=claim_in_another_process,
                args=(ledger_config, p, 4, start_together, results),
            )
            for p in range(2)
        ]
        for process in processes:
            process.start()
        try:
            won = [run for _ in processes for run in results.get(timeout=1.5 * PROCESS_TIMEOUT_S)]
        finally:
            for process in processes:
                process.join(timeout=PROCESS_TIMEOUT_S)
                if process.is_alive():
                    process.kill()
        assert all(process.exitcode == 0 for process in processes)
        assert len(won) == 1, won
        assert store.claim(ASSET, PARTITION, VERSION, "run-parent") is None


class TestSQLiteBatchStore(BatchStoreContract):
    @pytest.fixture
    def new_ledger_config(self, tmp_path: Path) -> Callable[[], dict[str, Any]]:
        def new() -> dict[str, Any]:
            path = tmp_path / uuid.uuid4().hex[:8] / "ledger.sqlite"
            return {"backend": "sqlite", "sqlite_path": str(path)}

        return new

    def test_tables_live_in_the_ledger_file_in_wal_mode(
        self, ledger_config: dict[str, Any]
    ) -> None:
        ledger = ResponseLedger(**ledger_config)
        store = ledger.batch_store()
        ledger.get_backend()
        try:
            assert isinstance(store, SQLiteBatchStore)
            assert store.path == ledger.sqlite_file().absolute()
            with sqlite3.connect(store.path) as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            assert {"responses", "batches", "batch_claims"} <= tables
        finally:
            store.close()
            ledger.get_backend().close()


@pytest.mark.postgres
class TestPostgresBatchStore(BatchStoreContract):
    @pytest.fixture
    def new_ledger_config(self, module_postgres_url: str) -> Callable[[], dict[str, Any]]:
        # A schema per test keeps tests independent without a CREATE DATABASE each.
        def new() -> dict[str, Any]:
            return {
                "backend": "postgres",
                "postgres_url": module_postgres_url,
                "postgres_schema": f"batches_{uuid.uuid4().hex[:8]}",
            }

        return new

    def test_tables_live_in_the_ledger_schema(self, ledger_config: dict[str, Any]) -> None:
        import psycopg2

        from llm_assets.resources.settings import postgres_dsn

        store = ResponseLedger(**ledger_config).batch_store()
        try:
            assert isinstance(store, PostgresBatchStore)
            assert store.schema == ledger_config["postgres_schema"]
            conn = psycopg2.connect(postgres_dsn(ledger_config["postgres_url"]))
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                        (ledger_config["postgres_schema"],),
                    )
                    tables = {row[0] for row in cur.fetchall()}
            finally:
                conn.close()
            assert {"batches", "batch_claims"} <= tables
        finally:
            store.close()
