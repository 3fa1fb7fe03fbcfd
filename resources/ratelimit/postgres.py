"""PostgreSQL backend of the rate-limit store, for limits shared by every host.

Runs the statements of ``sql`` on one autocommit connection; each is one
atomic ``UPDATE ... RETURNING`` of the limit's row, on the database's clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from llm_assets.resources.ratelimit.sql import SQL_PARAMETERS, SQLRateLimitStore
from llm_assets.resources.settings import describe_url, postgres_dsn

T = TypeVar("T")


class PostgresRateLimitStore(SQLRateLimitStore):
    """The state in PostgreSQL (table ``<schema>.rate_buckets``), shared by every host.

    Use the server that already holds Dagster's run storage: a rate-limit reservation is one
    short ``UPDATE`` of one row, and callers reserve small batches so that a busy step makes
    a few statements per second, not one per request.

    Args:
        url: ``postgresql://`` or ``postgresql+psycopg2://`` URL; never logged.
        schema: Schema of the table; created if missing.

    Examples:
        .. code-block:: python

            store = PostgresRateLimitStore(os.environ["DAGSTER_PG_URL"])
            store.read(limit_key("https://api.openai.com/v1", api_key)).rpm
    """

    def __init__(self, url: str, *, schema: str = "llm_assets") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", schema):
            raise ValueError(f"schema {schema!r} is not a plain SQL identifier")
        super().__init__()
        import psycopg2

        self._psycopg2 = psycopg2
        self.errors = (psycopg2.Error,)
        self._dsn = postgres_dsn(url)
        self.schema = schema
        self.words = {
            "table": f"{schema}.rate_buckets",
            "greatest": "greatest",
            "least": "least",
            "now": "extract(epoch FROM statement_timestamp())::float8",
            "key": "%(key)s",
            "rpm": "%(rpm)s::bigint",
            "tpm": "%(tpm)s::bigint",
            "hard": "%(hard)s::int",
        } | {
            name: f"%({name})s::float8"
            for name in SQL_PARAMETERS
            if name not in ("key", "rpm", "tpm", "hard", "now")
        }
        self._conn: Any = None
        self._connect()

    def __repr__(self) -> str:
        return f"PostgresRateLimitStore({describe_url(self._dsn)!r})"

    def _connect(self) -> None:
        conn = self._psycopg2.connect(
            self._dsn, connect_timeout=10, application_name="llm-assets-rate-limit"
        )
        with conn, conn.cursor() as cur:
            # Steps starting together would race on CREATE ... IF NOT EXISTS without the lock.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('llm_assets.rate_buckets'))")
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {self.schema}.rate_buckets ("
                " limit_key TEXT PRIMARY KEY,"
                " rpm BIGINT NOT NULL DEFAULT 0, tpm BIGINT NOT NULL DEFAULT 0,"
                " scale DOUBLE PRECISION NOT NULL DEFAULT 1.0,"
                " decreased_at DOUBLE PRECISION NOT NULL DEFAULT 0,"
                " paused_until DOUBLE PRECISION NOT NULL DEFAULT 0,"
                " tat_requests DOUBLE PRECISION NOT NULL DEFAULT 0,"
                " tat_tokens DOUBLE PRECISION NOT NULL DEFAULT 0)"
            )
        conn.autocommit = True
        self._conn = conn

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return self._retrying(lambda: self._fetchone(sql, params))

    def _fetchone(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone() if cur.description else None

    def _retrying(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except (self._psycopg2.OperationalError, self._psycopg2.InterfaceError):
            # One reconnect covers a server restart or an idle connection cut by a proxy.
            self.close()
            self._connect()
            return work()

    def close(self) -> None:
        """Closes the connection."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
