"""The ledger's databases: how its backends and the batch stores open and use them.

``SQLiteDatabase`` is one file in WAL mode with a pool of connections; ``PostgresDatabase`` is a
pool of connections to one schema, running each piece of work in a transaction that survives one
dropped connection. Both raise `LedgerUnavailableError` when the database cannot be reached, with
any password masked.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from llm_assets.resources.ledger.core import ConnectionPool, LedgerUnavailableError
from llm_assets.resources.settings import mask_url, postgres_dsn, scrub
from llm_assets.resources.sqlite import switch_to_wal

T = TypeVar("T")

_ATTEMPTS = 3


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL identifier in double quotes, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def _close(conn: psycopg2.extensions.connection) -> None:
    conn.close()


class _ConnectionDroppedError(Exception):
    """Internal: the connection died mid-transaction; the cause holds the driver error."""


class PostgresDatabase:
    """A pool of connections to one PostgreSQL schema, and transactions that retry.

    Args:
        url: ``postgresql://``, ``postgres://`` or ``postgresql+psycopg2://`` URL. Its password
            never appears in messages or logs.
        schema: The schema holding the caller's tables.
        name: What the caller is, for messages: ``"ledger"``, ``"batch store"``.
        application_name: Reported to the server unless the URL sets it.
        max_idle_connections: Connections kept open between calls.
        logger: Where retries are logged (the caller's logger).

    Examples:
        .. code-block:: python

            db = PostgresDatabase(url, schema="llm_assets", name="ledger",
                                  application_name="llm-assets-ledger")
            table = db.table("responses")

            def count(cur: psycopg2.extensions.cursor) -> int:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                return cur.fetchone()[0]

            rows = db.run(count)
            db.close()
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str,
        name: str,
        application_name: str,
        max_idle_connections: int,
        logger: logging.Logger,
    ) -> None:
        self.url = url
        self.schema = schema
        self._dsn = postgres_dsn(url)
        self._name = name
        self._application_name = application_name
        self._logger = logger
        self.pool: ConnectionPool[psycopg2.extensions.connection] = ConnectionPool(
            self._connect, _close, max_idle=max_idle_connections
        )

    def table(self, name: str) -> str:
        """The schema-qualified name of table ``name`` (given as a plain lower-case word)."""
        return f"{quote_ident(self.schema)}.{name}"

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            # Settings in the URL win; without a timeout libpq waits forever for a dead host.
            defaults = {"application_name": self._application_name, "connect_timeout": "10"}
            options = {k: v for k, v in defaults.items() if f"{k}=" not in self._dsn}
            conn = psycopg2.connect(self._dsn, **options)
            with conn.cursor() as cur:
                # Timestamps come back in UTC whatever the server or role default is.
                cur.execute("SET TIME ZONE 'UTC'")
            conn.commit()
        except psycopg2.Error as exc:
            message = scrub(str(exc).strip(), self.url)
            raise LedgerUnavailableError(
                f"cannot connect to the PostgreSQL {self._name} at {mask_url(self.url)}: {message}"
            ) from None
        return conn

    def run(self, work: Callable[[psycopg2.extensions.cursor], T]) -> T:
        """Run ``work`` in one transaction, retrying deadlocks and dropped connections.

        ``work`` must be safe to run again: a retry follows a rollback, or a connection that
        died before the caller learnt whether its commit arrived.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._run_once(work)
            except (psycopg2.extensions.TransactionRollbackError, _ConnectionDroppedError) as exc:
                if attempt == _ATTEMPTS:
                    raise (exc.__cause__ or exc) from None
                self._logger.warning(
                    "%s transaction failed (%s); retrying", self._name, type(exc).__name__
                )
        raise AssertionError("unreachable")

    def _run_once(self, work: Callable[[psycopg2.extensions.cursor], T]) -> T:
        with self.pool.connection() as conn:
            try:
                with conn.cursor() as cur:
                    result = work(cur)
                conn.commit()
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                # A pooled connection may have been cut by a server restart or an idle timeout.
                rolled_back = isinstance(exc, psycopg2.extensions.TransactionRollbackError)
                if conn.closed and not rolled_back:
                    raise _ConnectionDroppedError from exc
                raise
        return result

    def create_schema(
        self,
        tables: Sequence[str],
        lock: str,
        create: Callable[[psycopg2.extensions.cursor], None],
    ) -> None:
        """Create the schema and, unless ``tables`` all exist, run ``create`` under a lock.

        Args:
            tables: Qualified names of the tables ``create`` makes.
            lock: Key of the advisory lock that serialises concurrent first uses.
            create: Makes the tables and indexes, each ``IF NOT EXISTS``.
        """

        def create_once(cur: psycopg2.extensions.cursor) -> None:
            cur.execute("SELECT " + ", ".join(["to_regclass(%s)"] * len(tables)), tuple(tables))
            if None not in cur.fetchone():
                return
            # CREATE ... IF NOT EXISTS still fails on a catalog unique violation when two
            # sessions race; the lock makes the second one wait and then see the tables.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            create(cur)

        self.run(create_once)

    def close(self) -> None:
        """Close every connection; the database cannot be used afterwards."""
        self.pool.close()


class SQLiteDatabase:
    """One SQLite file in WAL mode, with a pool of connections safe for threads and processes.

    Connections are in autocommit mode: reads need no transaction, and writes open one with
    ``BEGIN IMMEDIATE`` (see `writing`), taking the write lock up front and waiting up to
    ``busy_timeout_s`` for other writers.

    Args:
        path: Database file; relative paths resolve against the working directory. The parent
            directory is created.
        name: What the caller is, for messages: ``"ledger"``, ``"batch store"``.
        busy_timeout_s: How long a write waits for another process's write lock.

    Examples:
        .. code-block:: python

            db = SQLiteDatabase(".dagster_home/ledger.sqlite", name="ledger")
            db.create_schema(["CREATE TABLE IF NOT EXISTS notes (body TEXT)"])
            with db.writing() as conn:
                conn.execute("INSERT INTO notes VALUES ('hello')")
            db.close()
    """

    def __init__(
        self, path: str | os.PathLike[str], *, name: str, busy_timeout_s: float = 30.0
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self._name = name
        self._busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerUnavailableError(
                f"cannot create the directory for the SQLite {name} {self.path}: {exc}"
            ) from exc
        self._pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(
            self._connect, sqlite3.Connection.close
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            # Autocommit mode: transactions are opened explicitly, so writes can BEGIN IMMEDIATE.
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            # In WAL mode NORMAL survives any process crash; only an OS crash or power cut can
            # drop the last commits. FULL would fsync every commit, and `LedgerWriter` commits
            # once per response.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot open the SQLite {self._name} {self.path}: {exc}"
            ) from exc
        return conn

    def create_schema(self, statements: Sequence[str]) -> None:
        """Switch the file to WAL mode, then run ``statements`` in one write transaction."""
        with self._pool.connection() as conn:
            switch_to_wal(conn, timeout_s=self._busy_timeout_s)
            with self._transaction(conn):
                for statement in statements:
                    conn.execute(statement)

    def connection(self) -> AbstractContextManager[sqlite3.Connection]:
        """Lend a connection for reads (autocommit: each statement is its own transaction)."""
        return self._pool.connection()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """Lend a connection inside a ``BEGIN IMMEDIATE`` transaction, committed on success."""
        with self._pool.connection() as conn, self._transaction(conn):
            yield conn

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection; the database cannot be used afterwards."""
        self._pool.close()
