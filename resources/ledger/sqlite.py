"""SQLite ledger backend: one file, several processes on one host, WAL mode."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from llm_assets.resources.ledger.core import LedgerBackend, LedgerEntry, entry_to_row, row_to_entry
from llm_assets.resources.sqlite import SQLiteDatabase

logger = logging.getLogger(__name__)

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER was 999 before 3.32; stay under it everywhere.
_MAX_PARAMS = 900

# Bodies last: SQLite decodes columns left to right and large values spill to overflow pages.
_COLUMNS = (
    "key, model, input_tokens, output_tokens, cost_usd, latency_s, created_at, "
    "run_id, asset_key, partition_key, task_version, request, response"
)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS responses (
        key TEXT PRIMARY KEY NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        latency_s REAL NOT NULL,
        created_at TEXT NOT NULL,
        run_id TEXT NOT NULL,
        asset_key TEXT NOT NULL,
        partition_key TEXT,
        task_version TEXT NOT NULL,
        request TEXT NOT NULL,
        response TEXT NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS responses_run_id ON responses (run_id)",
    "CREATE INDEX IF NOT EXISTS responses_asset ON responses (asset_key, partition_key)",
    # A request being paid for right now; expires_at is Unix time (one host, one clock).
    """
    CREATE TABLE IF NOT EXISTS request_claims (
        key TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS request_claims_owner ON request_claims (owner)",
)


def _to_row(entry: LedgerEntry) -> tuple[object, ...]:
    return entry_to_row(entry, entry.created_at.astimezone(UTC).isoformat(timespec="microseconds"))


def _to_entry(row: tuple) -> LedgerEntry:
    return row_to_entry(row, datetime.fromisoformat(row[6]))


def _chunks(keys: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(keys))
    return [unique[i : i + _MAX_PARAMS] for i in range(0, len(unique), _MAX_PARAMS)]


class SQLiteLedgerBackend(LedgerBackend):
    """Ledger in a SQLite file, safe for several threads and processes on one host.

    The file uses WAL mode so readers never block the writer; writers take the write lock up
    front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout_s`` for each other. Each thread
    borrows its own connection from a small pool.

    Args:
        path: Database file; relative paths resolve against the working directory. The parent
            directory is created.
        busy_timeout_s: How long a write waits for another process's write lock.

    Examples:
        .. code-block:: python

            backend = SQLiteLedgerBackend(".dagster_home/ledger.sqlite")
            hits = backend.get_many(keys)
            backend.close()
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        self._db = SQLiteDatabase(path, name="ledger", busy_timeout_s=busy_timeout_s)
        self.path = self._db.path
        self._db.create_schema(_SCHEMA)
        logger.debug("opened SQLite ledger at %s", self.path)

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the stored entries for ``keys``; keys not in the ledger are absent."""
        found: dict[str, LedgerEntry] = {}
        with self._db.connection() as conn:
            for chunk in _chunks(keys):
                query = (
                    f"SELECT {_COLUMNS} FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                )
                for row in conn.execute(query, chunk):
                    found[row[0]] = _to_entry(row)
        return found

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return the subset of ``keys`` present in the ledger, without loading the bodies."""
        found: set[str] = set()
        with self._db.connection() as conn:
            for chunk in _chunks(keys):
                query = f"SELECT key FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(row[0] for row in conn.execute(query, chunk))
        return found

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Store ``entries``; an existing key is left untouched. Returns how many were new."""
        if not entries:
            return 0
        rows = [_to_row(entry) for entry in entries]
        with self._db.writing() as conn:
            before = conn.total_changes
            conn.executemany(
                f"INSERT INTO responses ({_COLUMNS}) VALUES ({','.join('?' * 13)}) "
                "ON CONFLICT (key) DO NOTHING",
                rows,
            )
            inserted = conn.total_changes - before
        return inserted

    def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        """Claim unanswered, unclaimed (or expired) ``keys`` for ``owner``; return those won.

        Each chunk of keys is checked and claimed under SQLite's write lock, so two processes
        never both win a key.
        """
        won: set[str] = set()
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            with self._db.writing() as conn:
                now = time.time()
                answered = conn.execute(
                    f"SELECT key FROM responses WHERE key IN ({marks})", chunk
                ).fetchall()
                held = conn.execute(
                    f"SELECT key FROM request_claims WHERE key IN ({marks}) "
                    "AND expires_at > ? AND owner != ?",
                    [*chunk, now, owner],
                ).fetchall()
                taken = {row[0] for row in answered} | {row[0] for row in held}
                mine = [key for key in chunk if key not in taken]
                conn.executemany(
                    "INSERT INTO request_claims (key, owner, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, "
                    "expires_at = excluded.expires_at",
                    [(key, owner, now + lease_s) for key in mine],
                )
            won.update(mine)
        return won

    def renew_claims(self, owner: str, lease_s: float) -> int:
        """Extend every lease ``owner`` holds to ``lease_s`` seconds from now; return how many."""
        with self._db.writing() as conn:
            cursor = conn.execute(
                "UPDATE request_claims SET expires_at = ? WHERE owner = ?",
                (time.time() + lease_s, owner),
            )
            return cursor.rowcount

    def release_claims(self, owner: str) -> None:
        """Drop every claim ``owner`` holds."""
        with self._db.writing() as conn:
            conn.execute("DELETE FROM request_claims WHERE owner = ?", (owner,))

    def count(self) -> int:
        """Return the number of entries in the ledger."""
        with self._db.connection() as conn:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total cost in USD)`` paid, optionally filtered by run and asset."""
        filters = {"run_id": run_id, "asset_key": asset_key}
        where = [f"{column} = ?" for column, value in filters.items() if value is not None]
        params = [value for value in filters.values() if value is not None]
        query = "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0.0) FROM responses"
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._db.connection() as conn:
            entries, cost = conn.execute(query, params).fetchone()
        return entries, float(cost)

    def close(self) -> None:
        """Close every connection; the backend cannot be used afterwards."""
        self._db.close()
