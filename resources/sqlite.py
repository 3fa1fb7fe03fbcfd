"""SQLite files that several processes open at once (ledger, batch store, rate-limit store)."""

from __future__ import annotations

import sqlite3
import time


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
