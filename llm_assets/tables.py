"""From answers to tables: the output table with provenance, and the quarantine table."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pandas as pd

from llm_assets.hashing import canonical_json
from llm_assets.provenance import (
    BATCH_ID_FIELD,
    PROVENANCE_COLUMNS,
    QUARANTINE_COLUMNS,
    STATUS_FAILED,
    STATUS_OK,
    empty_output_frame,
)
from llm_assets.rendering import ROW_INDEX_COLUMN, PlannedRow
from llm_assets.resources.ledger import LedgerEntry
from llm_assets.resources.llm import ChatRequest, ChatResult, usage_details
from llm_assets.summary import StepSummary
from llm_assets.task import LLMTask


class RunStamp(NamedTuple):
    """The run that builds the tables and the task version it sends (with its model)."""

    run_id: str
    task_version: str


@dataclass(slots=True)
class Resolution:
    """The outcome of one unique request, after any repairs."""

    body: dict[str, Any] | None
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    cached: bool
    paid_by_run_id: str | None
    answer: dict[str, Any] | None = None
    error_class: str | None = None
    error: str | None = None
    final_key: str | None = None
    repairs: int = 0
    batch_id: str | None = None
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> Resolution:
        """An answer the ledger already held."""
        cached_input_tokens, reasoning_tokens = usage_details(entry.response)
        return cls(
            entry.response,
            sys.intern(entry.model),  # one string per model and run, not one per row
            entry.input_tokens,
            entry.output_tokens,
            entry.cost_usd,
            entry.latency_s,
            True,
            sys.intern(entry.run_id),
            batch_id=entry.response.get(BATCH_ID_FIELD) if entry.response else None,
            cached_input_tokens=cached_input_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    @classmethod
    def from_result(cls, result: ChatResult, run_id: str) -> Resolution:
        """An answer paid for now (or a request that failed after its retries)."""
        return cls(
            result.body if result.ok else None,
            result.model,
            result.input_tokens,
            result.output_tokens,
            result.cost_usd,
            result.latency_s,
            False,
            run_id if result.ok else None,
            error_class=result.error_class,
            error=result.error,
            cached_input_tokens=result.cached_input_tokens,
            reasoning_tokens=result.reasoning_tokens,
        )

    def settle(
        self, parsed: tuple[dict[str, Any] | None, str | None, str | None], key: str
    ) -> None:
        """Records the validated answer (or why it is invalid) of the request ``key``."""
        self.final_key = key
        if self.body is None:
            return
        self.answer, self.error_class, self.error = parsed
        if self.answer is not None:
            self.body = None  # only a failed answer's body is read again (to repair it)

    def followed_by(self, repair: Resolution) -> Resolution:
        """This resolution after a repair request: the repair's answer, summed costs."""
        return replace(
            repair,
            input_tokens=self.input_tokens + repair.input_tokens,
            output_tokens=self.output_tokens + repair.output_tokens,
            cached_input_tokens=self.cached_input_tokens + repair.cached_input_tokens,
            reasoning_tokens=self.reasoning_tokens + repair.reasoning_tokens,
            cost_usd=self.cost_usd + repair.cost_usd,
            latency_s=self.latency_s + repair.latency_s,
            cached=self.cached and repair.cached,
            repairs=self.repairs + 1,
        )


class TableBuilder:
    r"""Builds each partition's output and quarantine table row by row, in input order.

    Tables are kept column by column (a list per column, not a dict per row), so a table of a
    million rows costs about its values. A row whose answer is not known yet is `reserve`\ d
    (its place kept) and `fill`\ ed later. ``requests`` gives the body of a failed row's
    request, for the quarantine table; it is read when the row is added or filled.
    """

    def __init__(
        self,
        task: LLMTask,
        partitions: Iterable[str | None],
        requests: Mapping[str, ChatRequest],
        stamp: RunStamp,
        passthrough: tuple[str, ...],
    ) -> None:
        self.task, self.requests, self.stamp, self.passthrough = task, requests, stamp, passthrough
        self.id_column = task.id_column or ROW_INDEX_COLUMN
        self.fields = list(task.output_schema.model_fields)
        self.names = [self.id_column, *passthrough, *self.fields, *PROVENANCE_COLUMNS]
        self.columns: dict[str | None, list[list[Any]]] = {
            p: [[] for _ in self.names] for p in partitions
        }
        self.bad: dict[str | None, list[tuple[int, dict[str, Any]]]] = {p: [] for p in self.columns}
        self.now = datetime.now(UTC)

    def add(self, row: PlannedRow, res: Resolution | None) -> None:
        """Appends ``row`` answered by ``res`` (``None`` for a row failed before sending)."""
        columns = self.columns[row.partition]
        position = len(columns[0])
        for column, value in zip(columns, self._values(row, res, position), strict=True):
            column.append(value)

    def reserve(self, row: PlannedRow) -> int:
        """Keeps ``row``'s place; returns the position to `fill` later."""
        columns = self.columns[row.partition]
        position = len(columns[0])
        for column in columns:
            column.append(None)
        return position

    def fill(self, position: int, row: PlannedRow, res: Resolution | None) -> None:
        """Sets the reserved ``row`` at ``position``, answered by ``res``."""
        columns = self.columns[row.partition]
        for column, value in zip(columns, self._values(row, res, position), strict=True):
            column[position] = value

    def _values(self, row: PlannedRow, res: Resolution | None, position: int) -> list[Any]:
        run_id, task_version = self.stamp
        error_class, error = row.pre_error or (None, None)
        if res is not None:
            error_class, error = res.error_class, res.error
        answer = res.answer if res is not None else None
        ok = answer is not None
        error_name = None if ok else (error_class or "error")
        request_hash = (res.final_key if res else None) or row.key
        if not ok:
            body = self.requests[row.key].body if row.key else row.pre_body
            record = {
                self.id_column: row.row_id,
                "partition": row.partition,
                "error_class": error_name,
                "error": error,
                "request": canonical_json(body) if body is not None else None,
                "llm_request_hash": request_hash,
                "repairs": res.repairs if res else 0,
                "task_version": task_version,
                "run_id": run_id,
                "quarantined_at": self.now,
            }
            self.bad[row.partition].append((position, record))
        return [
            row.row_id,
            *(row.extra.get(name) for name in self.passthrough),
            *((answer.get(name) if answer else None) for name in self.fields),
            STATUS_OK if ok else STATUS_FAILED,
            None if ok else error,
            error_name,
            request_hash,
            task_version,
            res.model if res else None,
            res.input_tokens if res else 0,
            res.output_tokens if res else 0,
            res.cached_input_tokens if res else 0,
            res.reasoning_tokens if res else 0,
            res.cost_usd if res else 0.0,
            res.latency_s if res else 0.0,
            res.cached if res else False,
            res.repairs if res else 0,
            res.paid_by_run_id if res else None,
            res.batch_id if res else None,
            run_id,
        ]

    def finish(
        self, summaries: Mapping[str | None, StepSummary]
    ) -> tuple[dict[str | None, pd.DataFrame], dict[str | None, pd.DataFrame]]:
        """The output and quarantine tables of every partition; counts into ``summaries``.

        The builder is emptied: each column list is freed as its table column is made.
        """
        tables: dict[str | None, pd.DataFrame] = {}
        quarantine: dict[str | None, pd.DataFrame] = {}
        for partition in list(self.columns):
            columns = dict(zip(self.names, self.columns.pop(partition), strict=True))
            summary = summaries[partition]
            for status, error_class in zip(
                columns["llm_status"], columns["llm_error_class"], strict=True
            ):
                if status == STATUS_OK:
                    summary.ok += 1
                else:
                    summary.count_failure(error_class or "error")
            summary.models.update(m for m in set(columns["llm_model"]) if m)
            tables[partition] = _frame(columns, self.id_column, self.task, self.passthrough)
            records = [record for _, record in sorted(self.bad.pop(partition), key=_first)]
            quarantine[partition] = _quarantine_frame(records, self.id_column)
        return tables, quarantine


def _first(item: tuple[int, dict[str, Any]]) -> int:
    return item[0]


def build_outputs(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    rows: list[PlannedRow],
    resolved: Mapping[str, Resolution],
    requests: Mapping[str, ChatRequest],
    stamp: RunStamp,
    summaries: Mapping[str | None, StepSummary],
    passthrough: tuple[str, ...],
) -> tuple[dict[str | None, pd.DataFrame], dict[str | None, pd.DataFrame]]:
    """Builds the output and quarantine tables of every partition; counts into ``summaries``."""
    builder = TableBuilder(task, frames, requests, stamp, passthrough)
    for row in rows:
        builder.add(row, resolved.get(row.key) if row.key else None)
    return builder.finish(summaries)


def _frame(
    columns: dict[str, list[Any]], id_column: str, task: LLMTask, passthrough: tuple[str, ...]
) -> pd.DataFrame:
    empty = empty_output_frame(id_column, task.output_schema, passthrough)
    if not columns[id_column]:
        return empty
    data: dict[str, pd.Series] = {}
    for name in list(empty.columns):
        # Each list is freed once its column exists; dtypes inferred as from_records would.
        data[name] = pd.Series(columns.pop(name), dtype=PROVENANCE_COLUMNS.get(name))
    return pd.DataFrame(data, copy=False)


def _quarantine_frame(records: list[dict[str, Any]], id_column: str) -> pd.DataFrame:
    columns = [id_column, *QUARANTINE_COLUMNS]
    if not records:
        empty = {id_column: pd.Series([], dtype="object")}
        empty.update({c: pd.Series([], dtype=t) for c, t in QUARANTINE_COLUMNS.items()})
        return pd.DataFrame(empty)
    return pd.DataFrame.from_records(records, columns=columns).astype(QUARANTINE_COLUMNS)
