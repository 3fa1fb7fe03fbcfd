"""SQLite batch store: the ``batches`` and ``batch_claims`` tables in the ledger's file."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llm_assets.resources.batch.records import (
    HARVESTED,
    BatchRecord,
    Claim,
    check_update_state,
    scope_of,
)
from llm_assets.resources.batch.store import (
    COLUMN_COUNT,
    COLUMNS,
    BatchStore,
    record_to_row,
    row_to_record,
)
from llm_assets.resources.ledger import ConnectionPool, LedgerUnavailableError

logger = logging.getLogger(__name__)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS batches (
        batch_id TEXT PRIMARY KEY NOT NULL,
        scope TEXT NOT NULL,
        asset_key TEXT NOT NULL,
        partition_key TEXT,
        task_version TEXT NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        input_file_id TEXT NOT NULL,
        output_file_id TEXT,
        error_file_id TEXT,
        submitted_by_run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        error TEXT,
        request_count INTEGER NOT NULL,
        request_keys TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS batches_scope ON batches (scope, created_at)",
    f"CREATE INDEX IF NOT EXISTS batches_live ON batches (updated_at) WHERE state <> '{HARVESTED}'",
    """
    CREATE TABLE IF NOT EXISTS batch_claims (
        scope TEXT PRIMARY KEY NOT NULL,
        asset_key TEXT NOT NULL,
        partition_key TEXT,
        task_version TEXT NOT NULL,
        run_id TEXT NOT NULL,
        token TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )
    """,
)

_LIVE = f"state <> '{HARVESTED}'"


def _text(moment: datetime) -> str:
    # One fixed-width UTC spelling, so text order is time order in SQL comparisons.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _to_record(row: Sequence[object]) -> BatchRecord:
    return row_to_record(
        row, datetime.fromisoformat(str(row[11])), datetime.fromisoformat(str(row[12]))
    )


class SQLiteBatchStore(BatchStore):
    """Batch records in a SQLite file (normally the ledger's), safe for processes on one host.

    Like the ledger: WAL mode, writers take the write lock up front (``BEGIN IMMEDIATE``) and
    wait up to ``busy_timeout_s`` for each other, so a claim's check and its write are one
    atomic step for every process using the file.

    Args:
        path: Database file; the parent directory is created.
        busy_timeout_s: How long a write waits for another process's write lock.

    Examples:
        .. code-block:: python

            store = SQLiteBatchStore(".dagster_home/ledger.sqlite")
            claim = store.claim("review_insights", "2026-11-01", "v1", run_id)
            store.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path).expanduser().absolute()
        self._busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerUnavailableError(
                f"cannot create the directory for the SQLite batch store {self.path}: {exc}"
            ) from exc
        self._pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(
            self._connect, sqlite3.Connection.close
        )
        self._create_schema()
        logger.debug("opened SQLite batch store at %s", self.path)

    def __repr__(self) -> str:
        return f"SQLiteBatchStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        try:
            # Autocommit mode: transactions are opened explicitly, with BEGIN IMMEDIATE.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot open the SQLite batch store {self.path}: {exc}"
            ) from exc
        return conn

    def _create_schema(self) -> None:
        with self._pool.connection() as conn:
            deadline = time.monotonic() + self._busy_timeout_s
            # As in the ledger: switching to WAL can fail fast while another process does it.
            while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            with self._transaction(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._pool.connection() as conn, self._transaction(conn):
            yield conn

    def claim(
        self,
        asset_key: str,
        partition_key: str | None,
        task_version: str,
        run_id: str,
        lease_s: float = 600.0,
    ) -> Claim | None:
        """Claim the right to submit for a scope, or return None if someone else may."""
        scope = scope_of(asset_key, partition_key, task_version)
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=lease_s)
        claim = Claim(asset_key, partition_key, task_version, run_id, uuid.uuid4().hex, expires_at)
        live = f"SELECT 1 FROM batches WHERE scope = ? AND {_LIVE}"
        with self._writing() as conn:
            if conn.execute(live, (scope,)).fetchone():
                return None
            before = conn.total_changes
            conn.execute(
                "INSERT INTO batch_claims (scope, asset_key, partition_key, task_version, run_id, "
                "token, claimed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET run_id = excluded.run_id, "
                "token = excluded.token, claimed_at = excluded.claimed_at, "
                "expires_at = excluded.expires_at "
                "WHERE batch_claims.expires_at <= excluded.claimed_at "
                "OR batch_claims.run_id = excluded.run_id",
                (
                    scope,
                    asset_key,
                    partition_key,
                    task_version,
                    run_id,
                    claim.token,
                    _text(now),
                    _text(claim.expires_at),
                ),
            )
            won = conn.total_changes > before
        return claim if won else None

    def record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        """Store the submitted batches of ``claim`` and release it."""
        claim.check_records(records)
        rows = [record_to_row(r, _text(r.created_at), _text(r.updated_at)) for r in records]
        with self._writing() as conn:
            conn.executemany(
                f"INSERT INTO batches ({COLUMNS}) VALUES ({','.join('?' * COLUMN_COUNT)}) "
                "ON CONFLICT (batch_id) DO NOTHING",
                rows,
            )
            self._release(conn, claim)

    def release(self, claim: Claim) -> None:
        """Give up ``claim`` without recording anything (the submission failed)."""
        with self._writing() as conn:
            self._release(conn, claim)

    def _release(self, conn: sqlite3.Connection, claim: Claim) -> None:
        before = conn.total_changes
        conn.execute(
            "DELETE FROM batch_claims WHERE scope = ? AND token = ?", (claim.scope, claim.token)
        )
        if conn.total_changes == before:
            holder = conn.execute(
                "SELECT run_id FROM batch_claims WHERE scope = ?", (claim.scope,)
            ).fetchone()
            if holder is not None:
                logger.warning(
                    "the claim of run %s on %s lapsed and run %s claimed it since; batches "
                    "for this scope may have been submitted twice",
                    claim.run_id,
                    claim.scope,
                    holder[0],
                )

    def get(self, batch_id: str) -> BatchRecord | None:
        """Return the record of ``batch_id``, or None."""
        rows = self._select("WHERE batch_id = ?", (batch_id,))
        return rows[0] if rows else None

    def live_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return the scope's batches not yet harvested, oldest submission first."""
        scope = scope_of(asset_key, partition_key, task_version)
        return self._select(f"WHERE scope = ? AND {_LIVE} ORDER BY created_at, batch_id", (scope,))

    def history_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return every batch of the scope, harvested ones too, oldest submission first."""
        scope = scope_of(asset_key, partition_key, task_version)
        return self._select("WHERE scope = ? ORDER BY created_at, batch_id", (scope,))

    def live(self, limit: int = 100) -> list[BatchRecord]:
        """Return up to ``limit`` batches not yet harvested, least recently updated first."""
        return self._select(f"WHERE {_LIVE} ORDER BY updated_at, batch_id LIMIT ?", (limit,))

    def _select(self, where: str, params: tuple[object, ...]) -> list[BatchRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM batches {where}", params).fetchall()
        return [_to_record(row) for row in rows]

    def update(
        self,
        batch_id: str,
        *,
        state: str,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record what OpenAI reports about a batch; ``None`` fields keep their stored value."""
        check_update_state(state)
        with self._writing() as conn:
            cursor = conn.execute(
                "UPDATE batches SET state = ?, output_file_id = COALESCE(?, output_file_id), "
                "error_file_id = COALESCE(?, error_file_id), error = COALESCE(?, error), "
                f"updated_at = ? WHERE batch_id = ? AND {_LIVE}",
                (state, output_file_id, error_file_id, error, _text(datetime.now(UTC)), batch_id),
            )
            return cursor.rowcount > 0

    def mark_harvested(self, batch_id: str) -> bool:
        """Mark the batch's results as recorded in the ledger."""
        with self._writing() as conn:
            cursor = conn.execute(
                f"UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ? AND {_LIVE}",
                (HARVESTED, _text(datetime.now(UTC)), batch_id),
            )
            return cursor.rowcount > 0

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self._pool.close()
