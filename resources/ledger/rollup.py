"""Spend roll-ups of the ledger: what was paid, by day, asset, partition and model, in one query.

Every entry in the ledger is one paid response, so its sums are the money actually spent:
requests, tokens and US dollars. Entries recorded from an OpenAI batch carry the batch id in
their response body (``llm_assets_batch_id``) and were paid at the batch price; the roll-up
counts them apart so callers can tell what the batch discount saved. Days are UTC calendar
days of ``created_at`` (when the response arrived).

Works on the SQLite and the PostgreSQL backend alike, read-only, through the backend's own
database object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_assets.resources.ledger.core import LedgerBackend, LedgerError
from llm_assets.resources.ledger.postgres import PostgresLedgerBackend
from llm_assets.resources.ledger.sqlite import SQLiteLedgerBackend

# The field `sensors/batches.py` adds to a harvested batch line's body. Matched as the JSON key
# (quote, name, quote, colon): inside a JSON string value its quotes would be escaped.
_BATCH_MARKER = '"llm_assets_batch_id":'


@dataclass(frozen=True)
class SpendRow:
    """What the ledger holds for one day, asset, model and partition.

    Attributes:
        day: UTC day the responses arrived, ``YYYY-MM-DD``.
        asset_key: Slash-joined asset key that paid.
        model: Model the API reported.
        requests: Paid responses.
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
        cost_usd: US dollars paid (batch answers at the batch price).
        batch_requests: How many of ``requests`` were answered by a batch.
        batch_cost_usd: What those batch answers cost.
        partition: The partition the requests were paid for (``""`` when unpartitioned).
    """

    day: str
    asset_key: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    batch_requests: int
    batch_cost_usd: float
    partition: str = ""

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


def spend_rollup(
    backend: LedgerBackend, *, since: datetime | None = None, run_id: str | None = None
) -> list[SpendRow]:
    """The ledger's spend by UTC day, asset, model and partition, sorted by those four.

    Args:
        backend: An open SQLite or PostgreSQL ledger backend (``ResponseLedger.get_backend()``).
        since: Only responses that arrived at or after this time (timezone-aware).
        run_id: Only responses paid by this Dagster run.

    Returns:
        One row per day, asset, model and partition that has entries.

    Raises:
        LedgerError: ``backend`` is neither of the two built-in backends.

    Examples:
        >>> import tempfile, pathlib
        >>> backend = SQLiteLedgerBackend(pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite")
        >>> spend_rollup(backend)
        []
        >>> backend.close()
    """
    if since is not None and since.utcoffset() is None:
        raise ValueError("spend_rollup(since=...) must be timezone-aware, e.g. in UTC")
    if isinstance(backend, SQLiteLedgerBackend):
        return _sqlite(backend, since, run_id)
    if isinstance(backend, PostgresLedgerBackend):
        return _postgres(backend, since, run_id)
    raise LedgerError(
        f"spend_rollup reads the SQLite and PostgreSQL ledgers, not {type(backend).__name__}"
    )


_SUMS = (
    "asset_key, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), "
    "SUM(CASE WHEN {found} THEN 1 ELSE 0 END), SUM(CASE WHEN {found} THEN cost_usd ELSE 0 END), "
    "COALESCE(partition_key, '')"
)
# Day, asset, model and partition: the first three columns and the last.
_GROUPS = "GROUP BY 1, 2, 3, 10 ORDER BY 1, 2, 3, 10"


def _sqlite(
    backend: SQLiteLedgerBackend, since: datetime | None, run_id: str | None
) -> list[SpendRow]:
    where, params = _filters("?", since, run_id, since_value=_sqlite_time)
    sums = _SUMS.format(found="instr(response, ?) > 0")
    # created_at is stored as ISO 8601 text in UTC, so its first ten characters are the day.
    query = f"SELECT substr(created_at, 1, 10), {sums} FROM responses{where} {_GROUPS}"
    with backend._db.connection() as conn:  # read-only use of the backend's pool
        rows = conn.execute(query, [_BATCH_MARKER, _BATCH_MARKER, *params]).fetchall()
    return [_row(row) for row in rows]


def _postgres(
    backend: PostgresLedgerBackend, since: datetime | None, run_id: str | None
) -> list[SpendRow]:
    where, params = _filters("%s", since, run_id, since_value=lambda t: t)
    sums = _SUMS.format(found="strpos(response, %s) > 0")
    query = (
        f"SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), {sums} "
        f"FROM {backend.table}{where} {_GROUPS}"
    )

    def fetch(cur: Any) -> list[tuple[Any, ...]]:
        cur.execute(query, [_BATCH_MARKER, _BATCH_MARKER, *params])
        return list(cur.fetchall())

    return [_row(row) for row in backend._db.run(fetch)]


@dataclass(frozen=True)
class PaidUsage:
    """What one paid request of an asset asked and was billed, for forecasts.

    Attributes:
        messages: The request's chat messages.
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
    """

    messages: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int


def recent_usage(backend: LedgerBackend, asset_key: str, *, limit: int = 500) -> list[PaidUsage]:
    """The newest ``limit`` paid requests of ``asset_key``: their messages and billed tokens.

    Batch answers count too: the provider bills their tokens alike.

    Raises:
        LedgerError: ``backend`` is neither of the two built-in backends.

    Examples:
        >>> import tempfile, pathlib
        >>> backend = SQLiteLedgerBackend(pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite")
        >>> recent_usage(backend, "review_insights")
        []
        >>> backend.close()
    """
    columns = "request, input_tokens, output_tokens"
    if isinstance(backend, SQLiteLedgerBackend):
        query = (
            f"SELECT {columns} FROM responses WHERE asset_key = ? ORDER BY created_at DESC LIMIT ?"
        )
        with backend._db.connection() as conn:  # read-only use of the backend's pool
            rows = conn.execute(query, [asset_key, limit]).fetchall()
    elif isinstance(backend, PostgresLedgerBackend):
        query = (
            f"SELECT {columns} FROM {backend.table} WHERE asset_key = %s "
            "ORDER BY created_at DESC LIMIT %s"
        )

        def fetch(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(query, [asset_key, limit])
            return list(cur.fetchall())

        rows = backend._db.run(fetch)
    else:
        raise LedgerError(
            f"recent_usage reads the SQLite and PostgreSQL ledgers, not {type(backend).__name__}"
        )
    return [
        PaidUsage(list(json.loads(request).get("messages") or []), int(i or 0), int(o or 0))
        for request, i, o in rows
    ]


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _filters(
    mark: str, since: datetime | None, run_id: str | None, *, since_value: Any
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"created_at >= {mark}")
        params.append(since_value(since))
    if run_id is not None:
        clauses.append(f"run_id = {mark}")
        params.append(run_id)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _row(row: Sequence[Any]) -> SpendRow:
    day, asset, model, requests, input_tokens, output_tokens, cost, batch, batch_cost, part = row
    return SpendRow(
        day=str(day),
        asset_key=str(asset),
        model=str(model),
        requests=int(requests),
        input_tokens=int(input_tokens or 0),
        output_tokens=int(output_tokens or 0),
        cost_usd=float(cost or 0.0),
        batch_requests=int(batch or 0),
        batch_cost_usd=float(batch_cost or 0.0),
        partition=str(part or ""),
    )
