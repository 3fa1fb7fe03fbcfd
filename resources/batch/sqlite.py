"""SQLite batch store: the ``batches`` and ``batch_claims`` tables in the ledger's file."""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from llm_assets.resources.batch.records import (
    HARVESTED,
    BatchRecord,
    Claim,
    scope_of,
)
from llm_assets.resources.batch.store import (
    COLUMN_COUNT,
    COLUMNS,
    LIVE,
    BatchStore,
    record_to_row,
    row_to_record,
)
from llm_assets.resources.sqlite import SQLiteDatabase

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
    f"CREATE INDEX IF NOT EXISTS batches_live ON batches (updated_at) WHERE {LIVE}",
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

    _PARAM = "?"

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self._db = SQLiteDatabase(path, name="batch store", busy_timeout_s=busy_timeout_s)
        self.path = self._db.path
        self._db.create_schema(_SCHEMA)
        logger.debug("opened SQLite batch store at %s", self.path)

    def __repr__(self) -> str:
        return f"SQLiteBatchStore({str(self.path)!r})"

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
        live = f"SELECT 1 FROM batches WHERE scope = ? AND {LIVE}"
        with self._db.writing() as conn:
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

    def _record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        rows = [record_to_row(r, _text(r.created_at), _text(r.updated_at)) for r in records]
        with self._db.writing() as conn:
            conn.executemany(
                f"INSERT INTO batches ({COLUMNS}) VALUES ({','.join('?' * COLUMN_COUNT)}) "
                "ON CONFLICT (batch_id) DO NOTHING",
                rows,
            )
            self._release(conn, claim)

    def release(self, claim: Claim) -> None:
        """Give up ``claim`` without recording anything (the submission failed)."""
        with self._db.writing() as conn:
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
                self._warn_lapsed(claim, holder[0])

    def _select(self, where: str, params: tuple[object, ...]) -> list[BatchRecord]:
        with self._db.connection() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM batches {where}", params).fetchall()
        return [_to_record(row) for row in rows]

    def _update(
        self,
        batch_id: str,
        state: str,
        output_file_id: str | None,
        error_file_id: str | None,
        error: str | None,
    ) -> bool:
        with self._db.writing() as conn:
            cursor = conn.execute(
                "UPDATE batches SET state = ?, output_file_id = COALESCE(?, output_file_id), "
                "error_file_id = COALESCE(?, error_file_id), error = COALESCE(?, error), "
                f"updated_at = ? WHERE batch_id = ? AND {LIVE}",
                (state, output_file_id, error_file_id, error, _text(datetime.now(UTC)), batch_id),
            )
            return cursor.rowcount > 0

    def mark_harvested(self, batch_id: str) -> bool:
        """Mark the batch's results as recorded in the ledger."""
        with self._db.writing() as conn:
            cursor = conn.execute(
                f"UPDATE batches SET state = ?, updated_at = ? WHERE batch_id = ? AND {LIVE}",
                (HARVESTED, _text(datetime.now(UTC)), batch_id),
            )
            return cursor.rowcount > 0

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self._db.close()
