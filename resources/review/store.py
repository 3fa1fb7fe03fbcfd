"""The review store: flagged rows and people's decisions, in the ledger's database.

Three tables beside the ledger's (same SQLite file, or same PostgreSQL schema):

- ``review_items``: one row per flagged row content (asset, partition, request hash, task
  version), with the row as the gate wrote it and the last gate run that flagged it;
- ``review_decisions``: append-only; a decision is keyed by the request hash, the task version
  and a revision number, so a changed decision is a new entry and two people deciding the same
  row at once cannot both win (the second insert of a revision finds it taken);
- ``review_rounds``: one row per gate materialization of a partition, which the review sensor
  watches.

One SQL text serves both databases (``?`` placeholders, ``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from llm_assets.resources.database import PostgresDatabase
from llm_assets.resources.review.records import (
    DECISIONS,
    Decision,
    DecisionRecord,
    ReviewItem,
    ReviewRefused,
    ReviewRound,
)
from llm_assets.resources.sqlite import SQLiteDatabase

T = TypeVar("T")
_CHUNK = 500

_ITEM_COLUMNS = (
    "item_id, asset_key, partition_key, row_id, request_key, task_version, reason, row_json, "
    "opened_by_run_id, opened_at, last_run_id"
)
_DECISION_COLUMNS = (
    "request_key, task_version, revision, item_id, decision, value_json, reviewer, comment, "
    "decided_at"
)


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int: ...  # noqa: D102

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...  # noqa: D102
    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...  # noqa: D102
    def fetchone(self) -> Any: ...  # noqa: D102
    def fetchall(self) -> list[Any]: ...  # noqa: D102


class _PgCursor:
    """A psycopg2 cursor that takes the store's ``?`` placeholders."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
        return self._cur.executemany(sql.replace("?", "%s"), [tuple(p) for p in params])

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _partition(text: str) -> str | None:
    return text or None


class ReviewStore:
    """Flagged rows, decisions and rounds; safe across threads, processes and hosts.

    Get the one beside the ledger from ``ResponseLedger.review_store()``. Times are passed in
    (``now``) so a caller can run on a virtual clock; they default to the wall clock.

    Args:
        database: The ledger's database.

    Examples:
        >>> import tempfile
        >>> from llm_assets.resources.sqlite import SQLiteDatabase
        >>> store = ReviewStore(SQLiteDatabase(tempfile.mkdtemp() + "/l.sqlite", name="ledger"))
        >>> store.latest_rounds(["insights"])
        []
        >>> store.close()
    """

    def __init__(self, database: SQLiteDatabase | PostgresDatabase) -> None:
        self._db = database
        table = database.table if isinstance(database, PostgresDatabase) else str
        self._items = table("review_items")
        self._decisions = table("review_decisions")
        self._rounds = table("review_rounds")
        self._create()

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, work: Callable[[Cursor], T]) -> T:
        """Runs ``work`` in one write transaction."""
        if isinstance(self._db, PostgresDatabase):
            return self._db.run(lambda cur: work(_PgCursor(cur)))
        with self._db.writing() as conn:
            return work(conn.cursor())

    def _read(self, work: Callable[[Cursor], T]) -> T:
        if isinstance(self._db, PostgresDatabase):
            return self._db.run(lambda cur: work(_PgCursor(cur)))
        with self._db.connection() as conn:
            return work(conn.cursor())

    def _create(self) -> None:
        text = 'TEXT COLLATE "C"' if isinstance(self._db, PostgresDatabase) else "TEXT"
        statements = [
            f"""CREATE TABLE IF NOT EXISTS {self._items} (
                item_id {text} PRIMARY KEY, asset_key TEXT NOT NULL,
                partition_key TEXT NOT NULL, row_id TEXT NOT NULL, request_key TEXT NOT NULL,
                task_version TEXT NOT NULL, reason TEXT NOT NULL, row_json TEXT NOT NULL,
                opened_by_run_id TEXT NOT NULL, opened_at TEXT NOT NULL,
                last_run_id TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS review_items_round ON "
            f"{self._items} (asset_key, partition_key, last_run_id, row_id)",
            f"""CREATE TABLE IF NOT EXISTS {self._decisions} (
                request_key {text} NOT NULL, task_version TEXT NOT NULL,
                revision INTEGER NOT NULL, item_id TEXT NOT NULL, decision TEXT NOT NULL,
                value_json TEXT, reviewer TEXT NOT NULL, comment TEXT,
                decided_at TEXT NOT NULL,
                PRIMARY KEY (request_key, task_version, revision))""",
            f"""CREATE TABLE IF NOT EXISTS {self._rounds} (
                asset_key TEXT NOT NULL, partition_key TEXT NOT NULL, run_id TEXT NOT NULL,
                task_version TEXT NOT NULL, opened_at TEXT NOT NULL,
                PRIMARY KEY (asset_key, partition_key, run_id))""",
        ]
        if isinstance(self._db, PostgresDatabase):

            def create(cur: Any) -> None:
                for statement in statements:
                    cur.execute(statement)

            tables = [self._items, self._decisions, self._rounds]
            self._db.create_schema(tables, f"reviews:{self._items}", create)
        else:
            self._db.create_schema(statements)

    def close(self) -> None:
        """Release the connections; the store cannot be used afterwards."""
        self._db.close()

    # -- the gate ---------------------------------------------------------------------------

    def open_round(
        self,
        asset_key: str,
        partition_key: str | None,
        run_id: str,
        task_version: str,
        items: Sequence[ReviewItem],
        *,
        now: datetime | None = None,
    ) -> None:
        """Records a gate run's flagged rows of one partition (idempotent for a retried step).

        A row flagged before with the same content keeps its id, its first ``opened_at`` and
        its decisions; every row of ``items`` now belongs to this round, the partition's latest.
        """
        at = _stamp(now or datetime.now(UTC))
        part = partition_key or ""
        rows = [
            (
                i.item_id, asset_key, part, i.row_id, i.request_key, i.task_version, i.reason,
                json.dumps(i.row, default=str, ensure_ascii=False), run_id, at, run_id,
            )
            for i in items
        ]  # fmt: skip

        def write(cur: Cursor) -> None:
            cur.executemany(
                f"INSERT INTO {self._items} ({_ITEM_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO NOTHING",
                rows,
            )
            cur.executemany(
                f"UPDATE {self._items} SET last_run_id = ?, reason = ? WHERE item_id = ?",
                [(run_id, i.reason, i.item_id) for i in items],
            )
            cur.execute(
                f"INSERT INTO {self._rounds} (asset_key, partition_key, run_id, task_version, "
                "opened_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (asset_key, part, run_id, task_version, at),
            )

        self._run(write)

    def latest_decisions(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], DecisionRecord]:
        """The latest decision for each ``(request_key, task_version)`` that has one."""
        wanted = set(keys)
        by_key: dict[str, list[str]] = {}
        for request_key, version in wanted:
            by_key.setdefault(request_key, []).append(version)
        request_keys = sorted(by_key)
        found: dict[tuple[str, str], DecisionRecord] = {}

        def read(cur: Cursor) -> None:
            for start in range(0, len(request_keys), _CHUNK):
                chunk = request_keys[start : start + _CHUNK]
                cur.execute(
                    f"SELECT {_DECISION_COLUMNS} FROM {self._decisions} "
                    f"WHERE request_key IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                for row in cur.fetchall():
                    record = _decision(row)
                    key = (record.request_key, record.task_version)
                    if key in wanted and (
                        key not in found or found[key].revision < record.revision
                    ):
                        found[key] = record

        if request_keys:
            self._read(read)
        return found

    # -- people -----------------------------------------------------------------------------

    def items(
        self,
        asset_key: str,
        partition_key: str | None,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReviewItem]:
        """The rows of a partition's latest round, by row id, with their latest decision.

        Args:
            asset_key: The gate asset.
            partition_key: The partition.
            status: Only rows with this status (``pending``, ``approved``, ...).
            limit: At most this many (a page).
            offset: Skip this many.
        """
        latest = self._latest_round_id(asset_key, partition_key)
        if latest is None:
            return []
        where = ""
        params: list[Any] = [asset_key, partition_key or "", latest]
        if status == "pending":
            where = " AND d.revision IS NULL"
        elif status is not None:
            where = " AND d.decision = ?"
            params.append(status)
        sql = self._item_query() + where + " ORDER BY i.row_id LIMIT ? OFFSET ?"
        params += [limit, offset]
        return self._read(lambda cur: [_item(r) for r in _fetch(cur, sql, params)])

    def counts(self, asset_key: str, partition_key: str | None) -> dict[str, int]:
        """How many rows of a partition's latest round have each status."""
        latest = self._latest_round_id(asset_key, partition_key)
        if latest is None:
            return {}
        sql = (
            "SELECT COALESCE(d.decision, 'pending'), COUNT(*) FROM "
            + self._item_query(columns=False)
            + " GROUP BY COALESCE(d.decision, 'pending')"
        )
        rows = self._read(lambda cur: _fetch(cur, sql, [asset_key, partition_key or "", latest]))
        return {status: int(n) for status, n in rows}

    def item(self, item_id: str) -> ReviewItem | None:
        """The review item ``item_id`` with its latest decision, or None."""
        sql = self._item_query(by_id=True)
        rows = self._read(lambda cur: _fetch(cur, sql, [item_id]))
        return _item(rows[0]) if rows else None

    def decide(
        self,
        item_id: str,
        decision: Decision,
        reviewer: str,
        *,
        seen_revision: int = 0,
        value: dict[str, Any] | None = None,
        comment: str | None = None,
        task_version: str | None = None,
        now: datetime | None = None,
    ) -> DecisionRecord:
        """Records a decision on a row, after the checks that keep decisions sound.

        Args:
            item_id: The row's review id.
            decision: ``approved``, ``edited`` or ``rejected``.
            reviewer: Who decides (kept with the decision).
            seen_revision: The revision the decider saw: 0 for a pending row, the current one
                to change a decision. Anything else means someone decided in between.
            value: The edited answer (``edited`` only), already validated by the caller.
            comment: A note; a rejection's reason (required for ``rejected``).
            task_version: The version the decider saw, if known: a row answered since by a
                changed task is refused as stale.
            now: When (the wall clock by default).

        Returns:
            The recorded decision.

        Raises:
            ReviewRefused: Unknown id, a stale row, a row decided in between (or a replayed
                form), a missing reason or edit. Nothing is recorded.
        """
        if decision not in DECISIONS:
            raise ReviewRefused(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
        if not reviewer.strip():
            raise ReviewRefused("say who decides: a reviewer name is required")
        if decision == "rejected" and not (comment or "").strip():
            raise ReviewRefused(f"rejecting row {item_id} needs a reason (it goes to quarantine)")
        if (decision == "edited") != (value is not None):
            raise ReviewRefused("an edited answer comes with decision 'edited', and only then")
        at = now or datetime.now(UTC)

        def write(cur: Cursor) -> DecisionRecord:
            found = _fetch(cur, self._item_query(by_id=True), [item_id])
            if not found:
                raise ReviewRefused(
                    f"no row to review has id {item_id!r}: list them with "
                    "`python -m llm_assets review list`"
                )
            item = _item(found[0])
            self._check_current(cur, item, task_version)
            if item.revision != seen_revision:
                raise ReviewRefused(
                    f"row {item.row_id} ({item_id}) was {item.status} by {item.reviewer} at "
                    f"{item.decided_at:%Y-%m-%d %H:%M:%S} UTC after this form was shown; "
                    "nothing recorded: reload to see it and decide again if needed"
                )
            record = DecisionRecord(
                item.request_key, item.task_version, seen_revision + 1, item_id, decision,
                value, reviewer.strip(), (comment or "").strip() or None, at,
            )  # fmt: skip
            cur.execute(
                f"INSERT INTO {self._decisions} ({_DECISION_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    record.request_key, record.task_version, record.revision, item_id,
                    decision, None if value is None else json.dumps(value, ensure_ascii=False),
                    record.reviewer, record.comment, _stamp(at),
                ),
            )  # fmt: skip
            if cur.rowcount != 1:
                raise ReviewRefused(
                    f"row {item.row_id} ({item_id}) was decided by someone else a moment ago; "
                    "nothing recorded: reload to see their decision"
                )
            return record

        return self._run(write)

    def history(self, request_key: str, task_version: str) -> list[DecisionRecord]:
        """Every decision on a row's content, oldest first."""
        sql = (
            f"SELECT {_DECISION_COLUMNS} FROM {self._decisions} WHERE request_key = ? "
            "AND task_version = ? ORDER BY revision"
        )
        rows = self._read(lambda cur: _fetch(cur, sql, [request_key, task_version]))
        return [_decision(r) for r in rows]

    # -- the sensor -------------------------------------------------------------------------

    def latest_rounds(self, asset_keys: Sequence[str]) -> list[ReviewRound]:
        """The latest round of every partition of the gates ``asset_keys``, with its counts."""
        if not asset_keys:
            return []
        marks = ", ".join("?" * len(asset_keys))
        sql = f"""
            SELECT r.asset_key, r.partition_key, r.run_id, r.task_version, r.opened_at,
                   COUNT(i.item_id),
                   SUM(CASE WHEN i.item_id IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM {self._decisions} d WHERE d.request_key = i.request_key
                       AND d.task_version = i.task_version) THEN 1 ELSE 0 END),
                   MIN(CASE WHEN i.item_id IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM {self._decisions} d WHERE d.request_key = i.request_key
                       AND d.task_version = i.task_version) THEN i.opened_at END)
            FROM {self._rounds} r
            LEFT JOIN {self._items} i ON i.asset_key = r.asset_key
                AND i.partition_key = r.partition_key AND i.last_run_id = r.run_id
            WHERE r.asset_key IN ({marks}) AND NOT EXISTS (
                SELECT 1 FROM {self._rounds} later WHERE later.asset_key = r.asset_key
                AND later.partition_key = r.partition_key AND (later.opened_at > r.opened_at
                OR (later.opened_at = r.opened_at AND later.run_id > r.run_id)))
            GROUP BY r.asset_key, r.partition_key, r.run_id, r.task_version, r.opened_at
            ORDER BY r.asset_key, r.partition_key
        """
        rows = self._read(lambda cur: _fetch(cur, sql, list(asset_keys)))
        return [
            ReviewRound(
                asset, _partition(part), run_id, version, _time(opened),  # type: ignore[arg-type]
                int(flagged), int(undecided or 0), _time(first),
            )
            for asset, part, run_id, version, opened, flagged, undecided, first in rows
        ]  # fmt: skip

    # -- queries ----------------------------------------------------------------------------

    def _latest_round_id(self, asset_key: str, partition_key: str | None) -> str | None:
        sql = (
            f"SELECT run_id FROM {self._rounds} WHERE asset_key = ? AND partition_key = ? "
            "ORDER BY opened_at DESC, run_id DESC LIMIT 1"
        )
        rows = self._read(lambda cur: _fetch(cur, sql, [asset_key, partition_key or ""]))
        return str(rows[0][0]) if rows else None

    def _check_current(self, cur: Cursor, item: ReviewItem, task_version: str | None) -> None:
        cur.execute(
            f"SELECT r.run_id, r.task_version, i.last_run_id FROM {self._rounds} r "
            f"JOIN {self._items} i ON i.item_id = ? WHERE r.asset_key = ? AND "
            "r.partition_key = ? ORDER BY r.opened_at DESC, r.run_id DESC LIMIT 1",
            (item.item_id, item.asset_key, item.partition_key or ""),
        )
        latest = cur.fetchone()
        stale_version = task_version is not None and task_version != item.task_version
        if stale_version or latest is None or latest[0] != latest[2]:
            now_version = latest[1] if latest is not None else "?"
            raise ReviewRefused(
                f"row {item.row_id} ({item.item_id}) is stale: asset '{item.asset_key}' "
                f"partition {item.partition_key or '(none)'} was materialized again since "
                f"(task version {item.task_version} -> {now_version}) and this content is no "
                "longer its answer; nothing recorded: reload the review"
            )

    def _item_query(self, *, columns: bool = True, by_id: bool = False) -> str:
        latest = (
            f"d.request_key = i.request_key AND d.task_version = i.task_version AND "
            f"d.revision = (SELECT MAX(revision) FROM {self._decisions} m WHERE "
            "m.request_key = i.request_key AND m.task_version = i.task_version)"
        )
        selected = (
            "i.item_id, i.asset_key, i.partition_key, i.row_id, i.request_key, i.task_version, "
            "i.reason, i.row_json, i.opened_by_run_id, i.opened_at, d.revision, d.decision, "
            "d.value_json, d.reviewer, d.comment, d.decided_at"
        )
        where = (
            "i.item_id = ?"
            if by_id
            else "i.asset_key = ? AND i.partition_key = ? AND i.last_run_id = ?"
        )
        body = f"{self._items} i LEFT JOIN {self._decisions} d ON {latest} WHERE {where}"
        return f"SELECT {selected} FROM {body}" if columns else body


def _fetch(cur: Cursor, sql: str, params: Sequence[Any]) -> list[Any]:
    cur.execute(sql, params)
    return cur.fetchall()


def _item(row: Sequence[Any]) -> ReviewItem:
    (item_id, asset, part, row_id, request_key, version, reason, row_json, opened_by, opened,
     revision, decision, value, reviewer, comment, decided) = row  # fmt: skip
    return ReviewItem(
        item_id, asset, _partition(part), row_id, request_key, version, reason,
        json.loads(row_json), opened_by, _time(opened),  # type: ignore[arg-type]
        int(revision or 0), decision, None if value is None else json.loads(value), reviewer,
        comment, _time(decided),
    )  # fmt: skip


def _decision(row: Sequence[Any]) -> DecisionRecord:
    request_key, version, revision, item_id, decision, value, reviewer, comment, at = row
    return DecisionRecord(
        request_key, version, int(revision), item_id, decision,
        None if value is None else json.loads(value), reviewer, comment,
        _time(at),  # type: ignore[arg-type]
    )  # fmt: skip
