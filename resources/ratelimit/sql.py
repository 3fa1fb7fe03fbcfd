"""SQLite and PostgreSQL backends of the rate-limit store: one atomic statement per operation.

Both run the same ``UPDATE ... RETURNING`` statements, written once below with a few
dialect-specific words filled in. A single statement is atomic in both databases: PostgreSQL
locks the row for it (concurrent updates of one limit key queue up and each sees the previous
one's result), and SQLite takes its database-wide write lock. PostgreSQL keeps its own clock
(``statement_timestamp()``), so callers on hosts with skewed clocks still agree; SQLite is
on one host and uses that host's clock.

The table holds a hash of the endpoint and API key (``limit_key``), never the key.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from llm_assets.resources.ratelimit.store import (
    BucketPolicy,
    BucketRates,
    RateLimitStore,
    Reservation,
)
from llm_assets.resources.sqlite import switch_to_wal

T = TypeVar("T")

_RETURNING = "{now}, rpm, tpm, scale, decreased_at, paused_until, tat_requests, tat_tokens"

_INSERT = "INSERT INTO {table} (limit_key) VALUES ({key}) ON CONFLICT (limit_key) DO NOTHING"

_RESERVE = """
UPDATE {table} SET
    tat_requests = CASE WHEN {request_spacing} > 0
        THEN {greatest}(tat_requests, {now} - {request_burst}) + {requests} * {request_spacing}
        ELSE tat_requests END,
    tat_tokens = CASE WHEN {token_spacing} > 0
        THEN {greatest}(tat_tokens, {now} - {token_burst}) + {tokens} * {token_spacing}
        ELSE tat_tokens END
WHERE limit_key = {key}
RETURNING {returning}"""

_LEARN = """
UPDATE {table} SET rpm = COALESCE({rpm}, rpm), tpm = COALESCE({tpm}, tpm)
WHERE limit_key = {key}
RETURNING {returning}"""

_PAUSE = """
UPDATE {table} SET
    tat_requests = {greatest}(tat_requests, {now} + {seconds}),
    tat_tokens = {greatest}(tat_tokens, {now} + {seconds}),
    paused_until = CASE WHEN {hard} = 1
        THEN {greatest}(paused_until, {now} + {seconds}) ELSE paused_until END
WHERE limit_key = {key}
RETURNING {returning}"""

_DECREASE = """
UPDATE {table} SET
    scale = CASE WHEN {now} - decreased_at >= {cooldown}
        THEN {greatest}({floor},
            {least}(1.0, scale + {recovery} * ({now} - decreased_at)) * {factor})
        ELSE scale END,
    decreased_at = CASE WHEN {now} - decreased_at >= {cooldown}
        THEN {now} ELSE decreased_at END
WHERE limit_key = {key}
RETURNING {returning}"""

_READ = "SELECT {returning} FROM {table} WHERE limit_key = {key}"

SQL_PARAMETERS = (
    "key",
    "requests",
    "tokens",
    "request_spacing",
    "request_burst",
    "token_spacing",
    "token_burst",
    "rpm",
    "tpm",
    "seconds",
    "hard",
    "cooldown",
    "floor",
    "recovery",
    "factor",
    "now",
)


def _reservation(row: tuple[Any, ...]) -> Reservation:
    now, rpm, tpm, scale, decreased_at, paused_until, tat_requests, tat_tokens = row
    policy = BucketPolicy(
        float(now), int(rpm), int(tpm), float(scale), float(decreased_at), float(paused_until)
    )
    return Reservation(float(tat_requests), float(tat_tokens), policy)


class SQLRateLimitStore(RateLimitStore):
    """The operations, given a dialect (``words``) and a way to run one statement."""

    words: Mapping[str, str] = {}

    def __init__(self) -> None:
        self._ensured: set[str] = set()
        self._lock = threading.Lock()

    def _sql(self, template: str) -> str:
        return template.format(returning=_RETURNING.format(**self.words), **self.words)

    @property
    def _clock_param(self) -> dict[str, float]:
        return {}

    def _run(self, key: str, template: str, **params: Any) -> Reservation:
        with self._lock:
            for _ in range(2):
                if key not in self._ensured:
                    self._execute(self._sql(_INSERT), {"key": key})
                    self._ensured.add(key)
                row = self._execute(
                    self._sql(template), {"key": key, **self._clock_param, **params}
                )
                if row is not None:
                    return _reservation(row)
                self._ensured.discard(key)  # the row was deleted under us; recreate it
        raise RuntimeError(f"{self!r} could not create the row of limit {key}")

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def reserve(self, key: str, requests: int, tokens: int, rates: BucketRates) -> Reservation:
        """Takes units from the buckets (see ``RateLimitStore.reserve``)."""
        return self._run(
            key,
            _RESERVE,
            requests=requests,
            tokens=tokens,
            request_spacing=rates.request_spacing_s,
            request_burst=rates.request_burst_s,
            token_spacing=rates.token_spacing_s,
            token_burst=rates.token_burst_s,
        )

    def learn(self, key: str, *, rpm: int | None, tpm: int | None) -> BucketPolicy:
        """Records limits (see ``RateLimitStore.learn``)."""
        return self._run(key, _LEARN, rpm=rpm, tpm=tpm).policy

    def pause(self, key: str, seconds: float, *, hard: bool) -> BucketPolicy:
        """Holds the buckets (see ``RateLimitStore.pause``)."""
        return self._run(key, _PAUSE, seconds=seconds, hard=int(hard)).policy

    def decrease(
        self, key: str, *, factor: float, floor: float, cooldown_s: float, recovery_per_s: float
    ) -> BucketPolicy:
        """Decreases the scale (see ``RateLimitStore.decrease``)."""
        return self._run(
            key,
            _DECREASE,
            factor=factor,
            floor=floor,
            cooldown=cooldown_s,
            recovery=recovery_per_s,
        ).policy

    def read(self, key: str) -> BucketPolicy:
        """Returns the state (see ``RateLimitStore.read``)."""
        return self._run(key, _READ).policy


class SQLiteRateLimitStore(SQLRateLimitStore):
    """The state in a SQLite file, shared by the processes of one host.

    Args:
        path: The database file; its directory is created.
        busy_timeout_s: How long a writer waits for another process's write lock.

    Examples:
        >>> import tempfile, os
        >>> store = SQLiteRateLimitStore(os.path.join(tempfile.mkdtemp(), "limits.sqlite"))
        >>> store.learn("k", rpm=60, tpm=None).rpm
        60
        >>> store.close()
    """

    errors = (sqlite3.Error,)
    words = {"table": "rate_buckets", "greatest": "max", "least": "min", "now": ":now"} | {
        name: f":{name}" for name in SQL_PARAMETERS if name != "now"
    }

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement is its own transaction, which is all the store needs.
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        switch_to_wal(self._conn, timeout_s=busy_timeout_s)
        # WAL with synchronous=NORMAL does not fsync each commit; a lost bucket is harmless.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS rate_buckets ("
            " limit_key TEXT PRIMARY KEY,"
            " rpm INTEGER NOT NULL DEFAULT 0, tpm INTEGER NOT NULL DEFAULT 0,"
            " scale REAL NOT NULL DEFAULT 1.0, decreased_at REAL NOT NULL DEFAULT 0,"
            " paused_until REAL NOT NULL DEFAULT 0,"
            " tat_requests REAL NOT NULL DEFAULT 0, tat_tokens REAL NOT NULL DEFAULT 0)"
        )

    def __repr__(self) -> str:
        return f"SQLiteRateLimitStore({str(self.path)!r})"

    @property
    def _clock_param(self) -> dict[str, float]:
        return {"now": time.time()}

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        """Closes the connection."""
        self._conn.close()
