"""Databases the ledger and the batch stores share: a connection pool and PostgreSQL.

``ConnectionPool`` lends connections to one thread at a time and survives ``fork()``;
``PostgresDatabase`` is a pool of connections to one schema, running each piece of work in a
transaction that survives one dropped connection. ``SQLiteDatabase`` lives in
`llm_assets.resources.sqlite`. A database that cannot be reached raises
`LedgerUnavailableError`, with any password masked.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import psycopg2
import psycopg2.extensions

from llm_assets.resources.errors import LedgerError, LedgerUnavailableError
from llm_assets.resources.settings import mask_url, postgres_dsn, scrub

ConnectionT = TypeVar("ConnectionT")

# Connections inherited across fork() must never be closed by the child: closing a PostgreSQL
# connection sends a terminate message on a socket the parent is still using.
_ABANDONED_AFTER_FORK: list[Any] = []


class ConnectionPool(Generic[ConnectionT]):
    """A small thread-safe, fork-aware pool; each connection is used by one thread at a time."""

    def __init__(
        self,
        connect: Callable[[], ConnectionT],
        close: Callable[[ConnectionT], None],
        *,
        max_idle: int = 8,
    ) -> None:
        self._connect = connect
        self._close = close
        self._max_idle = max_idle
        self._idle: list[ConnectionT] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[ConnectionT]:
        """Lend a connection; one that saw an exception is closed rather than reused."""
        with self._lock:
            if self._closed:
                raise LedgerError("the ledger backend is closed")
            if self._pid != os.getpid():
                _ABANDONED_AFTER_FORK.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            self._close(conn)
            raise
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        self._close(conn)

    def close(self) -> None:
        """Close idle connections now and lent ones when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                self._close(conn)


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

        Raises:
            LedgerUnavailableError: No connection could be opened, or every attempt's
                connection was cut (a server restarting or failing over).
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return self._run_once(work)
            except (psycopg2.extensions.TransactionRollbackError, _ConnectionDroppedError) as exc:
                if attempt == _ATTEMPTS:
                    cause = exc.__cause__ or exc
                    if isinstance(exc, _ConnectionDroppedError):
                        message = scrub(str(cause).strip(), self.url)
                        raise LedgerUnavailableError(
                            f"the PostgreSQL {self._name} at {mask_url(self.url)} cut the "
                            f"connection {_ATTEMPTS} times in a row: {message}"
                        ) from None
                    raise cause from None
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
