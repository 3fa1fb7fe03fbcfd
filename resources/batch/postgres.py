"""PostgreSQL batch store: ``batches`` and ``batch_claims`` next to the ledger's table."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import psycopg2.extensions
import psycopg2.extras

from llm_assets.resources.batch.records import (
    HARVESTED,
    BatchRecord,
    Claim,
    scope_of,
)
from llm_assets.resources.batch.store import (
    COLUMNS,
    LIVE,
    BatchStore,
    record_to_row,
    row_to_record,
)
from llm_assets.resources.database import PostgresDatabase
from llm_assets.resources.settings import mask_url

logger = logging.getLogger(__name__)

Cursor: TypeAlias = psycopg2.extensions.cursor


def _to_record(row: Sequence[Any]) -> BatchRecord:
    return row_to_record(row, row[11].astimezone(UTC), row[12].astimezone(UTC))


class PostgresBatchStore(BatchStore):
    """Batch records in PostgreSQL, safe for any number of threads, processes and hosts.

    A claim is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` on ``batch_claims``: the row
    lock makes concurrent claimers of one scope wait for each other, and the ``WHERE`` lets the
    next one in only over an expired claim or its own run's. Leases run on the server's clock,
    so hosts with skewed clocks agree on when a claim lapses. Tables are created on first use
    under an advisory lock, like the ledger's.

    Args:
        url: ``postgresql://``, ``postgres://`` or ``postgresql+psycopg2://`` URL; its password
            never appears in messages or logs.
        schema: Schema holding the tables (the ledger's, ``llm_assets`` by default).
        max_idle_connections: Connections kept open between calls.

    Examples:
        .. code-block:: python

            store = PostgresBatchStore(os.environ["DAGSTER_PG_URL"])
            for record in store.live(limit=20):
                ...  # poll OpenAI, then store.update(record.batch_id, state=...)
            store.close()
    """

    _PARAM = "%s"

    def __init__(self, url: str, *, schema: str = "llm_assets", max_idle_connections: int = 2):
        # Every operation is safe to run again, as `PostgresDatabase.run` needs: inserts skip
        # existing batch ids, and a claim retried by its own run succeeds over the claim the
        # first try may have committed.
        self._db = PostgresDatabase(
            url,
            schema=schema,
            name="batch store",
            application_name="llm-assets-batches",
            max_idle_connections=max_idle_connections,
            logger=logger,
        )
        self.schema = schema
        self.batches = self._db.table("batches")
        self.claims = self._db.table("batch_claims")
        self._create_schema()
        logger.debug("opened PostgreSQL batch store %s (%s)", mask_url(url), self.batches)

    def __repr__(self) -> str:
        return f"PostgresBatchStore({mask_url(self._db.url)!r}, schema={self.schema!r})"

    def _create_schema(self) -> None:
        def create(cur: Cursor) -> None:
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.batches} (
                    batch_id TEXT COLLATE "C" PRIMARY KEY,
                    scope TEXT COLLATE "C" NOT NULL,
                    asset_key TEXT NOT NULL,
                    partition_key TEXT,
                    task_version TEXT NOT NULL,
                    state TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    input_file_id TEXT NOT NULL,
                    output_file_id TEXT,
                    error_file_id TEXT,
                    submitted_by_run_id TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    updated_at TIMESTAMPTZ NOT NULL,
                    error TEXT,
                    request_count INTEGER NOT NULL,
                    request_keys TEXT NOT NULL
                )
                """
            )
            cur.execute(
                f"CREATE INDEX IF NOT EXISTS batches_scope ON {self.batches} (scope, created_at)"
            )
            cur.execute(
                f"CREATE INDEX IF NOT EXISTS batches_live ON {self.batches} (updated_at) "
                f"WHERE {LIVE}"
            )
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.claims} (
                    scope TEXT COLLATE "C" PRIMARY KEY,
                    asset_key TEXT NOT NULL,
                    partition_key TEXT,
                    task_version TEXT NOT NULL,
                    run_id TEXT NOT NULL,
                    token TEXT NOT NULL,
                    claimed_at TIMESTAMPTZ NOT NULL,
                    expires_at TIMESTAMPTZ NOT NULL
                )
                """
            )

        self._db.create_schema([self.batches, self.claims], f"batches:{self.batches}", create)

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

        def take(cur: Cursor) -> Claim | None:
            token = uuid.uuid4().hex
            cur.execute(
                f"INSERT INTO {self.claims} AS held (scope, asset_key, partition_key, "
                "task_version, run_id, token, claimed_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, now(), now() + make_interval(secs => %s)) "
                "ON CONFLICT (scope) DO UPDATE SET run_id = EXCLUDED.run_id, "
                "token = EXCLUDED.token, claimed_at = EXCLUDED.claimed_at, "
                "expires_at = EXCLUDED.expires_at "
                "WHERE held.expires_at <= now() OR held.run_id = EXCLUDED.run_id "
                "RETURNING expires_at",
                (scope, asset_key, partition_key, task_version, run_id, token, float(lease_s)),
            )
            taken = cur.fetchone()
            if taken is None:
                return None
            # Checked after taking the claim row: a submitter that recorded its batches and
            # released its claim just now has committed both, and this statement sees them.
            cur.execute(f"SELECT 1 FROM {self.batches} WHERE scope = %s AND {LIVE}", (scope,))
            if cur.fetchone() is not None:
                cur.connection.rollback()
                return None
            expires_at = taken[0].astimezone(UTC)
            return Claim(asset_key, partition_key, task_version, run_id, token, expires_at)

        return self._db.run(take)

    def _record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        rows = [record_to_row(r, r.created_at, r.updated_at) for r in records]

        def store(cur: Cursor) -> None:
            if rows:
                psycopg2.extras.execute_values(
                    cur,
                    f"INSERT INTO {self.batches} ({COLUMNS}) VALUES %s "
                    "ON CONFLICT (batch_id) DO NOTHING",
                    rows,
                )
            self._release(cur, claim)

        self._db.run(store)

    def release(self, claim: Claim) -> None:
        """Give up ``claim`` without recording anything (the submission failed)."""
        self._db.run(lambda cur: self._release(cur, claim))

    def _release(self, cur: Cursor, claim: Claim) -> None:
        cur.execute(
            f"DELETE FROM {self.claims} WHERE scope = %s AND token = %s",
            (claim.scope, claim.token),
        )
        if cur.rowcount:
            return
        cur.execute(f"SELECT run_id FROM {self.claims} WHERE scope = %s", (claim.scope,))
        holder = cur.fetchone()
        if holder is not None:
            self._warn_lapsed(claim, holder[0])

    def _select(self, where: str, params: tuple[object, ...]) -> list[BatchRecord]:
        def fetch(cur: Cursor) -> list[BatchRecord]:
            cur.execute(f"SELECT {COLUMNS} FROM {self.batches} {where}", params)
            return [_to_record(row) for row in cur.fetchall()]

        return self._db.run(fetch)

    def _update(
        self,
        batch_id: str,
        state: str,
        output_file_id: str | None,
        error_file_id: str | None,
        error: str | None,
    ) -> bool:
        params = (state, output_file_id, error_file_id, error, datetime.now(UTC), batch_id)

        def change(cur: Cursor) -> bool:
            cur.execute(
                f"UPDATE {self.batches} SET state = %s, "
                "output_file_id = COALESCE(%s, output_file_id), "
                "error_file_id = COALESCE(%s, error_file_id), error = COALESCE(%s, error), "
                f"updated_at = %s WHERE batch_id = %s AND {LIVE}",
                params,
            )
            return cur.rowcount > 0

        return self._db.run(change)

    def mark_harvested(self, batch_id: str) -> bool:
        """Mark the batch's results as recorded in the ledger."""

        def harvest(cur: Cursor) -> bool:
            cur.execute(
                f"UPDATE {self.batches} SET state = %s, updated_at = %s "
                f"WHERE batch_id = %s AND {LIVE}",
                (HARVESTED, datetime.now(UTC), batch_id),
            )
            return cur.rowcount > 0

        return self._db.run(harvest)

    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""
        self._db.close()
