"""PostgreSQL ledger backend: one table shared by every run, host and process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC

import psycopg2.extensions
import psycopg2.extras

from llm_assets.resources.database import PostgresDatabase
from llm_assets.resources.ledger.core import LedgerBackend, LedgerEntry, entry_to_row, row_to_entry
from llm_assets.resources.settings import mask_url

logger = logging.getLogger(__name__)

_KEYS_PER_QUERY = 25_000
_ROWS_PER_INSERT = 1_000

_COLUMNS = (
    "key, model, input_tokens, output_tokens, cost_usd, latency_s, created_at, "
    "run_id, asset_key, partition_key, task_version, request, response"
)


def _to_row(entry: LedgerEntry) -> tuple[object, ...]:
    return entry_to_row(entry, entry.created_at)


def _to_entry(row: tuple) -> LedgerEntry:
    return row_to_entry(row, row[6].astimezone(UTC))


class PostgresLedgerBackend(LedgerBackend):
    """Ledger in a PostgreSQL table, safe for any number of threads, processes and hosts.

    Request and response bodies are stored as TEXT holding JSON: decoding TEXT with
    ``json.loads`` is faster for bulk reads than JSONB, and ``response::jsonb`` still works in
    ad-hoc queries. The schema and table are created on first use; concurrent first uses are
    serialised with an advisory lock.

    Args:
        url: ``postgresql://``, ``postgres://`` or ``postgresql+psycopg2://`` URL. Its password
            never appears in messages or logs.
        schema: Schema holding the ``responses`` table.
        max_idle_connections: Connections kept open between calls.

    Examples:
        .. code-block:: python

            backend = PostgresLedgerBackend(os.environ["DAGSTER_PG_URL"])
            hits = backend.get_many(keys)
            backend.close()
    """

    def __init__(self, url: str, *, schema: str = "llm_assets", max_idle_connections: int = 4):
        self._db = PostgresDatabase(
            url,
            schema=schema,
            name="ledger",
            application_name="llm-assets-ledger",
            max_idle_connections=max_idle_connections,
            logger=logger,
        )
        self._pool = self._db.pool  # the tests cut a pooled connection to check the retry
        self.schema = schema
        self.table = self._db.table("responses")
        self.claims_table = self._db.table("request_claims")
        self._create_schema()
        logger.debug("opened PostgreSQL ledger %s (table %s)", mask_url(url), self.table)

    def __repr__(self) -> str:
        return f"PostgresLedgerBackend({mask_url(self._db.url)!r}, schema={self.schema!r})"

    def _create_schema(self) -> None:
        def create(cur: psycopg2.extensions.cursor) -> None:
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    key TEXT COLLATE "C" PRIMARY KEY,
                    model TEXT NOT NULL,
                    input_tokens BIGINT NOT NULL,
                    output_tokens BIGINT NOT NULL,
                    cost_usd DOUBLE PRECISION NOT NULL,
                    latency_s DOUBLE PRECISION NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL,
                    run_id TEXT NOT NULL,
                    asset_key TEXT NOT NULL,
                    partition_key TEXT,
                    task_version TEXT NOT NULL,
                    request TEXT NOT NULL,
                    response TEXT NOT NULL
                )
                """
            )
            cur.execute(f"CREATE INDEX IF NOT EXISTS responses_run_id ON {self.table} (run_id)")
            cur.execute(
                "CREATE INDEX IF NOT EXISTS responses_asset "
                f"ON {self.table} (asset_key, partition_key)"
            )
            # A request being paid for right now; leases run on the server's clock, which
            # every host sharing the ledger agrees on.
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.claims_table} (
                    key TEXT COLLATE "C" PRIMARY KEY,
                    owner TEXT NOT NULL,
                    expires_at TIMESTAMPTZ NOT NULL
                )
                """
            )
            cur.execute(
                f"CREATE INDEX IF NOT EXISTS request_claims_owner ON {self.claims_table} (owner)"
            )

        self._db.create_schema([self.table, self.claims_table], f"ledger:{self.table}", create)

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the stored entries for ``keys``; keys not in the ledger are absent."""
        unique = list(dict.fromkeys(keys))
        query = f"SELECT {_COLUMNS} FROM {self.table} WHERE key = ANY(%s)"

        def fetch(cur: psycopg2.extensions.cursor) -> dict[str, LedgerEntry]:
            found: dict[str, LedgerEntry] = {}
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                cur.execute(query, (unique[start : start + _KEYS_PER_QUERY],))
                for row in cur.fetchall():
                    found[row[0]] = _to_entry(row)
            return found

        return self._db.run(fetch) if unique else {}

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return the subset of ``keys`` present in the ledger, without loading the bodies."""
        unique = list(dict.fromkeys(keys))
        query = f"SELECT key FROM {self.table} WHERE key = ANY(%s)"

        def fetch(cur: psycopg2.extensions.cursor) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                cur.execute(query, (unique[start : start + _KEYS_PER_QUERY],))
                found.update(row[0] for row in cur.fetchall())
            return found

        return self._db.run(fetch) if unique else set()

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Store ``entries``; an existing key is left untouched. Returns how many were new."""
        # Inserting in key order means two writers with overlapping batches lock keys in the
        # same order and cannot deadlock; within a batch the first entry for a key wins.
        first: dict[str, LedgerEntry] = {}
        for entry in entries:
            first.setdefault(entry.key, entry)
        rows = [_to_row(first[key]) for key in sorted(first)]
        query = (
            f"INSERT INTO {self.table} ({_COLUMNS}) VALUES %s "
            "ON CONFLICT (key) DO NOTHING RETURNING key"
        )

        def insert(cur: psycopg2.extensions.cursor) -> int:
            inserted = psycopg2.extras.execute_values(
                cur, query, rows, page_size=_ROWS_PER_INSERT, fetch=True
            )
            return len(inserted)

        return self._db.run(insert) if rows else 0

    def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        """Claim unanswered, unclaimed (or expired) ``keys`` for ``owner``; return those won.

        One ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` per chunk: the row lock on a
        claim makes exactly one of several racing owners win it.
        """
        unique = sorted(set(keys))  # one lock order for every claimer: no deadlocks
        claim = f"""
            INSERT INTO {self.claims_table} AS c (key, owner, expires_at)
            SELECT k, %(owner)s, clock_timestamp() + make_interval(secs => %(lease)s)
            FROM unnest(%(keys)s::text[]) AS k
            WHERE NOT EXISTS (SELECT 1 FROM {self.table} r WHERE r.key = k)
            ON CONFLICT (key) DO UPDATE
                SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                WHERE c.expires_at <= clock_timestamp() OR c.owner = EXCLUDED.owner
            RETURNING key
        """
        # The claim's snapshot may predate an answer whose claim was dropped while this
        # statement waited on it; a second statement sees that answer, and gives the key back.
        answered = f"SELECT key FROM {self.table} WHERE key = ANY(%s)"
        release = f"DELETE FROM {self.claims_table} WHERE owner = %s AND key = ANY(%s)"

        def work(cur: psycopg2.extensions.cursor) -> set[str]:
            won: set[str] = set()
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                chunk = unique[start : start + _KEYS_PER_QUERY]
                cur.execute(claim, {"owner": owner, "lease": float(lease_s), "keys": chunk})
                mine = [row[0] for row in cur.fetchall()]
                cur.execute(answered, (mine,))
                late = [row[0] for row in cur.fetchall()]
                if late:
                    cur.execute(release, (owner, late))
                won.update(mine)
                won.difference_update(late)
            return won

        return self._db.run(work) if unique else set()

    def renew_claims(self, owner: str, lease_s: float) -> int:
        """Extend every lease ``owner`` holds to ``lease_s`` seconds from now; return how many."""

        def work(cur: psycopg2.extensions.cursor) -> int:
            cur.execute(
                f"UPDATE {self.claims_table} "
                "SET expires_at = clock_timestamp() + make_interval(secs => %s) WHERE owner = %s",
                (float(lease_s), owner),
            )
            return cur.rowcount

        return self._db.run(work)

    def release_claims(self, owner: str) -> None:
        """Drop every claim ``owner`` holds."""

        def work(cur: psycopg2.extensions.cursor) -> None:
            cur.execute(f"DELETE FROM {self.claims_table} WHERE owner = %s", (owner,))

        self._db.run(work)

    def count(self) -> int:
        """Return the number of entries in the ledger."""

        def fetch(cur: psycopg2.extensions.cursor) -> int:
            cur.execute(f"SELECT COUNT(*) FROM {self.table}")
            return cur.fetchone()[0]

        return self._db.run(fetch)

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total cost in USD)`` paid, optionally filtered by run and asset."""
        filters = {"run_id": run_id, "asset_key": asset_key}
        where = [f"{column} = %s" for column, value in filters.items() if value is not None]
        params = [value for value in filters.values() if value is not None]
        query = f"SELECT COUNT(*), COALESCE(SUM(cost_usd), 0.0) FROM {self.table}"
        if where:
            query += " WHERE " + " AND ".join(where)

        def fetch(cur: psycopg2.extensions.cursor) -> tuple[int, float]:
            cur.execute(query, params)
            entries, cost = cur.fetchone()
            return entries, float(cost)

        return self._db.run(fetch)

    def close(self) -> None:
        """Close every connection; the backend cannot be used afterwards."""
        self._db.close()
