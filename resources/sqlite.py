"""SQLite files that several processes open at once (ledger, batch store, rate-limit store)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from llm_assets.resources.database import ConnectionPool
from llm_assets.resources.errors import LedgerUnavailableError


def switch_to_wal(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Puts the database file of ``conn`` in WAL mode, waiting while others hold it.

    Switching needs a moment alone with the file: while another process creates or switches
    the same database, SQLite fails at once with "database is locked", whatever the busy
    timeout. So the switch is retried until it holds or ``timeout_s`` has passed.

    Args:
        conn: An open connection in autocommit mode.
        timeout_s: How long to keep trying.

    Raises:
        sqlite3.OperationalError: The file stayed locked for ``timeout_s``.

    Examples:
        >>> import sqlite3, tempfile, os
        >>> conn = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.db"), isolation_level=None)
        >>> switch_to_wal(conn, timeout_s=5)
        >>> conn.execute("PRAGMA journal_mode").fetchone()[0]
        'wal'
    """
    deadline = time.monotonic() + timeout_s
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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
