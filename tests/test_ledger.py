"""The response ledger: one contract, passed by the SQLite and the Postgres backend alike."""

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest

from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
    LedgerUnavailableError,
    LedgerWriter,
    PostgresLedgerBackend,
    ResponseLedger,
    SQLiteLedgerBackend,
)
from llm_assets.resources.settings import mask_url

PG_ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
# Starting a process that imports dagster takes 2-15 s on a loaded 2-core machine.
PROCESS_TIMEOUT_S = 120


def make_entry(i: int, **overrides: Any) -> LedgerEntry:
    fields: dict[str, Any] = {
        "key": hashlib.sha256(f"request-{i}".encode()).hexdigest(),
        "response": {
            "id": f"chatcmpl-{i}",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f'{{"score": {i % 5}}}'},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100 + i, "completion_tokens": 20},
            "nested": {"list": [1, 2.5, None, True, "é ✓"], "empty": {}},
        },
        "request": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Review number {i}"}],
            "response_format": {"type": "json_object"},
            "params": {"temperature": 0},
        },
        "model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 100 + i,
        "output_tokens": 20,
        "cost_usd": 0.001,
        "latency_s": 0.25,
        "created_at": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC) + timedelta(seconds=i),
        "run_id": "run-a",
        "asset_key": "review_insights",
        "partition_key": "2024-05-01",
        "task_version": "v1",
    }
    fields.update(overrides)
    return LedgerEntry(**fields)


def write_from_another_process(
    config: dict[str, Any], first: int, count: int, start_together: Any, results: Any
) -> None:
    """Runs in a child process: what a second Dagster step sharing the ledger does."""
    start_together.wait(timeout=PROCESS_TIMEOUT_S)
    backend = ResponseLedger(**config).get_backend()  # every process creates the schema at once
    inserted = 0
    try:
        for start in range(first, first + count, 50):
            batch = [make_entry(i) for i in range(start, min(start + 50, first + count))]
            inserted += backend.put_many(batch[::-1])
    finally:
        backend.close()
    results.put(inserted)


def _clean_processes() -> Any:
    """Processes forked from a fresh interpreter that has imported this module once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([write_from_another_process.__module__])
    return context


def _eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class _WrappedBackend(LedgerBackend):
    """A real backend whose writes can be slowed down or made to fail."""

    def __init__(
        self,
        inner: LedgerBackend,
        *,
        delay_s: float = 0.0,
        fail_in_background: bool = False,
        fail_in_caller: bool = False,
    ) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self.fail_in_background = fail_in_background
        self.fail_in_caller = fail_in_caller
        self.batches: list[int] = []

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        in_background = threading.current_thread().name == "llm-assets-ledger-writer"
        if self.fail_in_background if in_background else self.fail_in_caller:
            raise OSError("disk on fire")
        time.sleep(self.delay_s)
        self.batches.append(len(entries))
        return self.inner.put_many(entries)

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        return self.inner.get_many(keys)

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        return self.inner.contains_many(keys)

    def count(self) -> int:
        return self.inner.count()

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        return self.inner.spend(run_id=run_id, asset_key=asset_key)

    def close(self) -> None:
        self.inner.close()


class LedgerContract:
    """Tests every backend must pass; subclasses provide ``ledger_config`` and ``backend``."""

    @pytest.fixture
    def new_ledger_config(self) -> Callable[[], dict[str, Any]]:
        """Returns ResponseLedger settings for a new, empty ledger each time it is called."""
        raise NotImplementedError

    @pytest.fixture
    def ledger_config(self, new_ledger_config: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return new_ledger_config()

    @pytest.fixture
    def backend(self, ledger_config: dict[str, Any]) -> Iterator[LedgerBackend]:
        raise NotImplementedError

    def test_round_trip_keeps_every_field(self, backend: LedgerBackend) -> None:
        paris = timezone(timedelta(hours=2))
        entry = make_entry(1, created_at=datetime(2024, 5, 1, 14, 30, 0, 5, tzinfo=paris))
        no_partition = make_entry(2, partition_key=None, cost_usd=0.0)
        assert backend.put_many([entry, no_partition]) == 2

        stored = backend.get(entry.key)
        assert stored == entry
        assert stored.response == entry.response
        assert stored.request == entry.request
        assert stored.created_at == datetime(2024, 5, 1, 12, 30, 0, 5, tzinfo=UTC)
        assert stored.created_at.utcoffset() == timedelta(0)
        assert backend.get(no_partition.key) == no_partition
        assert backend.get("0" * 64) is None

    def test_get_many_looks_up_5000_keys_in_bulk(self, backend: LedgerBackend) -> None:
        entries = [make_entry(i) for i in range(4000)]
        backend.put_many(entries)
        missing = [hashlib.sha256(f"never-{i}".encode()).hexdigest() for i in range(1000)]
        keys = [e.key for e in entries] + missing

        found = backend.get_many(keys)

        assert len(found) == 4000
        assert found[entries[3999].key] == entries[3999]
        assert not set(missing) & set(found)
        assert backend.contains_many(keys) == {e.key for e in entries}
        assert backend.get_many([]) == {} and backend.contains_many([]) == set()
        assert len(backend.get_many([entries[0].key] * 3)) == 1

    def test_first_writer_wins(self, backend: LedgerBackend) -> None:
        original = make_entry(7, run_id="run-first", cost_usd=0.5)
        assert backend.put_many([original]) == 1

        later = make_entry(7, run_id="run-second", cost_usd=9.0, response={"other": True})
        assert backend.put_many([later]) == 0

        assert backend.get(original.key) == original
        twins = [make_entry(8, run_id="first-in-batch"), make_entry(8, run_id="second-in-batch")]
        assert backend.put_many(twins) == 1
        assert backend.get_many([twins[0].key])[twins[0].key].run_id == "first-in-batch"

    def test_put_many_returns_how_many_were_new(self, backend: LedgerBackend) -> None:
        assert backend.put_many([make_entry(i) for i in range(10)]) == 10
        assert backend.put_many([make_entry(i) for i in range(5, 15)]) == 5
        assert backend.put_many([]) == 0
        assert backend.count() == 15

    def test_spend_filters_by_run_and_asset(self, backend: LedgerBackend) -> None:
        backend.put_many(
            [make_entry(i, run_id="run-a", asset_key="a", cost_usd=0.25) for i in range(4)]
            + [make_entry(i, run_id="run-b", asset_key="a", cost_usd=1.0) for i in range(4, 6)]
            + [make_entry(i, run_id="run-b", asset_key="b/c", cost_usd=2.0) for i in range(6, 7)]
        )
        assert backend.spend() == (7, pytest.approx(5.0))
        assert backend.spend(run_id="run-a") == (4, pytest.approx(1.0))
        assert backend.spend(asset_key="a") == (6, pytest.approx(3.0))
        assert backend.spend(run_id="run-b", asset_key="b/c") == (1, pytest.approx(2.0))
        assert backend.spend(run_id="nobody") == (0, 0.0)

    def test_creating_the_schema_twice_is_harmless(
        self, ledger_config: dict[str, Any], backend: LedgerBackend
    ) -> None:
        backend.put_many([make_entry(1)])
        second = ResponseLedger(**ledger_config).get_backend()
        try:
            assert second.count() == 1
            second.put_many([make_entry(2)])
        finally:
            second.close()
        assert backend.count() == 2

    @pytest.mark.timeout(2 * PROCESS_TIMEOUT_S)
    def test_processes_creating_and_writing_at_once_lose_and_duplicate_nothing(
        self, new_ledger_config: Callable[[], dict[str, Any]]
    ) -> None:
        # Four steps of 500 entries each; neighbours share 250 keys, so 1,250 are distinct.
        config = new_ledger_config()
        context = _clean_processes()
        start_together, results = context.Barrier(4), context.Queue()
        processes = [
            context.Process(
                target=write_from_another_process,
                args=(config, p * 250, 500, start_together, results),
            )
            for p in range(4)
        ]
        for process in processes:
            process.start()
        deadline = time.monotonic() + 1.5 * PROCESS_TIMEOUT_S
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        assert [process.exitcode for process in processes] == [0, 0, 0, 0]
        assert sum(results.get(timeout=30) for _ in processes) == 1250

        backend = ResponseLedger(**config).get_backend()
        try:
            assert backend.count() == 1250
            assert len(backend.get_many([make_entry(i).key for i in range(1250)])) == 1250
        finally:
            backend.close()

    def test_threads_share_one_backend(self, backend: LedgerBackend) -> None:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for start in range(0, 200, 20):
                    batch = [make_entry(i) for i in range(t * 100 + start, t * 100 + start + 20)]
                    backend.put_many(batch)
                    assert len(backend.get_many([e.key for e in batch])) == 20
            except BaseException as exc:  # surfaced by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert backend.count() == 500

    def test_writer_commits_each_entry_before_add_returns(self, backend: LedgerBackend) -> None:
        with LedgerWriter(backend) as writer:
            writer.add(make_entry(1))
            assert backend.count() == 1
            writer.add(make_entry(1))  # already recorded: written, not inserted
        assert (writer.written, writer.inserted) == (2, 1)

    def test_writer_batches_what_other_threads_add_during_a_write(
        self, backend: LedgerBackend
    ) -> None:
        slow = _WrappedBackend(backend, delay_s=0.01)
        start_together = threading.Barrier(4)
        with LedgerWriter(slow, batch_size=5) as writer:

            def add_25(first: int) -> None:
                start_together.wait(timeout=30)  # however late each thread gets to start
                for i in range(first, first + 25):
                    writer.add(make_entry(i))

            threads = [threading.Thread(target=add_25, args=(t * 25,)) for t in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert backend.count() == 100 and writer.written == 100
        assert max(slow.batches) <= 5 and len(slow.batches) < 100

    def test_background_writer_commits_promptly_without_a_flush(
        self, backend: LedgerBackend
    ) -> None:
        with LedgerWriter(backend, batch_size=1000, max_delay_s=60) as writer:
            writer.add(make_entry(1))
            # 30 s is half of max_delay_s: a writer that waits for it (or a full batch) fails.
            assert _eventually(lambda: backend.count() == 1)
        assert writer.written == 1

    def test_background_writer_bounds_batches_and_backlog(self, backend: LedgerBackend) -> None:
        slow = _WrappedBackend(backend, delay_s=0.02)
        with LedgerWriter(slow, batch_size=5, max_delay_s=60) as writer:
            for i in range(60):
                writer.add(make_entry(i))
                assert len(writer._buffer) < 5
        assert backend.count() == 60 and writer.written == 60
        assert max(slow.batches) <= 5 and len(slow.batches) < 60

    def test_writer_writes_what_is_left_on_exit(self, backend: LedgerBackend) -> None:
        stuck = _WrappedBackend(backend, fail_in_background=True)
        with LedgerWriter(stuck, batch_size=1000, max_delay_s=60) as writer:
            for i in range(5):
                writer.add(make_entry(i))
            assert backend.count() == 0
        assert backend.count() == 5 and writer.written == 5

    def test_writer_writes_what_is_left_when_the_block_raises(self, backend: LedgerBackend) -> None:
        stuck = _WrappedBackend(backend, fail_in_background=True)
        writer = LedgerWriter(stuck, batch_size=1000, max_delay_s=60)
        with pytest.raises(RuntimeError, match="provider went away"), writer:
            writer.add(make_entry(1))
            writer.add(make_entry(2))
            raise RuntimeError("provider went away")
        assert backend.count() == 2

    def test_writer_surfaces_a_database_that_keeps_failing(self, backend: LedgerBackend) -> None:
        broken = _WrappedBackend(backend, fail_in_background=True, fail_in_caller=True)
        writer = LedgerWriter(broken)
        with pytest.raises(OSError, match="disk on fire"):
            writer.add(make_entry(1))
        with pytest.raises(OSError, match="disk on fire"):
            writer.close()

        writer = LedgerWriter(broken, batch_size=3, max_delay_s=0.05)
        with pytest.raises(LedgerError, match="its last write failed"):
            for i in range(100):
                writer.add(make_entry(i))
        with pytest.raises(OSError, match="disk on fire"):
            writer.close()
        assert backend.count() == 0

    def test_entries_pickle_before_and_after_storage(self, backend: LedgerBackend) -> None:
        entry = make_entry(3)
        backend.put_many([entry])
        stored = backend.get_many([entry.key])[entry.key]
        assert pickle.loads(pickle.dumps(entry)) == entry
        assert pickle.loads(pickle.dumps(stored)) == entry
        assert dataclasses.replace(stored, run_id="other").response == entry.response

    def test_resource_inside_a_real_materialization(self, ledger_config: dict[str, Any]) -> None:
        rows = [make_entry(i) for i in range(10)]

        @dg.asset
        def review_insights(
            context: dg.AssetExecutionContext, ledger: ResponseLedger
        ) -> dg.MaterializeResult:
            done = ledger.get_many([row.key for row in rows])
            with ledger.writer(batch_size=4) as writer:
                for row in rows:
                    if row.key not in done:
                        writer.add(dataclasses.replace(row, run_id=context.run_id))
            return dg.MaterializeResult(metadata={"paid": writer.written, "reused": len(done)})

        def materialize() -> tuple[str, dict[str, Any]]:
            result = dg.materialize(
                [review_insights], resources={"ledger": ResponseLedger(**ledger_config)}
            )
            assert result.success
            event = result.asset_materializations_for_node("review_insights")[0]
            return result.run_id, {k: v.value for k, v in event.metadata.items()}

        first_run, first = materialize()
        second_run, second = materialize()

        assert first == {"paid": 10, "reused": 0}
        assert second == {"paid": 0, "reused": 10}
        ledger = ResponseLedger(**ledger_config)
        assert ledger.spend(run_id=first_run) == (10, pytest.approx(0.01))
        assert ledger.spend(run_id=second_run) == (0, 0.0)
        ledger.get_backend().close()


class TestSQLiteLedger(LedgerContract):
    @pytest.fixture
    def new_ledger_config(self, tmp_path: Path) -> Callable[[], dict[str, Any]]:
        def new() -> dict[str, Any]:
            path = tmp_path / uuid.uuid4().hex[:8] / "ledger.sqlite"
            return {"backend": "sqlite", "sqlite_path": str(path)}

        return new

    @pytest.fixture
    def backend(self, ledger_config: dict[str, Any]) -> Iterator[LedgerBackend]:
        backend = SQLiteLedgerBackend(ledger_config["sqlite_path"])
        yield backend
        backend.close()

    def test_uses_wal_so_readers_do_not_block_writers(self, backend: SQLiteLedgerBackend) -> None:
        import sqlite3

        with sqlite3.connect(backend.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres
class TestPostgresLedger(LedgerContract):
    @pytest.fixture
    def new_ledger_config(self, module_postgres_url: str) -> Callable[[], dict[str, Any]]:
        # A schema per ledger keeps tests independent without a CREATE DATABASE each.
        def new() -> dict[str, Any]:
            return {
                "backend": "postgres",
                "postgres_url": module_postgres_url,
                "postgres_schema": f"ledger_{uuid.uuid4().hex[:8]}",
            }

        return new

    @pytest.fixture
    def backend(self, ledger_config: dict[str, Any]) -> Iterator[LedgerBackend]:
        backend = PostgresLedgerBackend(
            ledger_config["postgres_url"], schema=ledger_config["postgres_schema"]
        )
        yield backend
        backend.close()

    def test_recovers_from_a_dropped_connection(self, backend: PostgresLedgerBackend) -> None:
        backend.put_many([make_entry(1)])
        with backend._pool.connection() as conn:
            pid = conn.get_backend_pid()
        admin = psycopg2.connect(**PG_ADMIN)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        assert backend.get(make_entry(1).key) == make_entry(1)


def test_postgres_without_url_says_which_field_and_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    ledger = ResponseLedger(backend="postgres")
    with pytest.raises(LedgerConfigError, match="postgres_url") as raised:
        ledger.get_backend()
    assert "DAGSTER_PG_URL" in str(raised.value)
    assert isinstance(raised.value, UserError)


def test_postgres_url_from_an_unset_env_var_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEDGER_URL_FOR_TEST", raising=False)
    ledger = ResponseLedger(backend="postgres", postgres_url=dg.EnvVar("LEDGER_URL_FOR_TEST"))
    with pytest.raises(LedgerConfigError, match="LEDGER_URL_FOR_TEST"):
        ledger.get_backend()


def test_connection_errors_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql+psycopg2://app:s3cret%21pw@127.0.0.1:1/ledger"
    with caplog.at_level(logging.DEBUG), pytest.raises(LedgerUnavailableError) as raised:
        PostgresLedgerBackend(url)
    message = str(raised.value)
    assert "postgresql+psycopg2://app:***@127.0.0.1:1/ledger" in message
    assert "s3cret" not in message and "s3cret" not in caplog.text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args


def test_mask_url_hides_passwords_in_userinfo_and_query() -> None:
    assert mask_url("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_url("postgresql://h/d?user=u&password=p&x=1") == (
        "postgresql://h/d?user=u&password=***&x=1"
    )
    assert mask_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_disabled_ledger_neither_reads_nor_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = ResponseLedger(sqlite_path=str(path), enabled=False)
    assert ledger.put_many([make_entry(1)]) == 0
    assert ledger.get_many([make_entry(1).key]) == {}
    assert ledger.get(make_entry(1).key) is None
    with ledger.writer() as writer:
        writer.add(make_entry(2))
    assert writer.written == 0
    assert not path.exists()


def test_bare_ledger_lives_in_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    ledger = ResponseLedger()
    try:
        assert ledger.put_many([make_entry(1)]) == 1
    finally:
        ledger.get_backend().close()
    assert (tmp_path / "home" / "ledger.sqlite").exists()


def test_bare_ledger_without_dagster_home_uses_dot_dagster_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    ledger = ResponseLedger()
    try:
        assert ledger.put_many([make_entry(1)]) == 1
    finally:
        ledger.get_backend().close()
    assert (tmp_path / ".dagster_home" / "ledger.sqlite").exists()


def test_naive_created_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_entry(1, created_at=datetime(2024, 5, 1))


@pytest.mark.timeout(PROCESS_TIMEOUT_S)
def test_importing_the_module_has_no_side_effects(tmp_path: Path) -> None:
    code = "import llm_assets.resources.ledger, threading; assert threading.active_count() == 1"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
    assert list(tmp_path.iterdir()) == []
