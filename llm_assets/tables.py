"""From answers to tables: the output table with provenance, and the quarantine table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pandas as pd

from llm_assets.planning import ROW_INDEX_COLUMN, PlannedRow
from llm_assets.provenance import (
    BATCH_ID_FIELD,
    PROVENANCE_COLUMNS,
    QUARANTINE_COLUMNS,
    STATUS_FAILED,
    STATUS_OK,
    empty_output_frame,
)
from llm_assets.resources.ledger import LedgerEntry
from llm_assets.resources.llm import ChatRequest, ChatResult
from llm_assets.summary import StepSummary
from llm_assets.task import LLMTask, canonical_json


class RunStamp(NamedTuple):
    """The run that builds the tables and the task version it sends (with its model)."""

    run_id: str
    task_version: str


@dataclass
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

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> Resolution:
        """An answer the ledger already held."""
        return cls(
            entry.response,
            entry.model,
            entry.input_tokens,
            entry.output_tokens,
            entry.cost_usd,
            entry.latency_s,
            True,
            entry.run_id,
            batch_id=entry.response.get(BATCH_ID_FIELD) if entry.response else None,
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
        )

    def settle(
        self, parsed: tuple[dict[str, Any] | None, str | None, str | None], key: str
    ) -> None:
        """Records the validated answer (or why it is invalid) of the request ``key``."""
        self.final_key = key
        if self.body is None:
            return
        self.answer, self.error_class, self.error = parsed

    def followed_by(self, repair: Resolution) -> Resolution:
        """This resolution after a repair request: the repair's answer, summed costs."""
        return replace(
            repair,
            input_tokens=self.input_tokens + repair.input_tokens,
            output_tokens=self.output_tokens + repair.output_tokens,
            cost_usd=self.cost_usd + repair.cost_usd,
            latency_s=self.latency_s + repair.latency_s,
            cached=self.cached and repair.cached,
            repairs=self.repairs + 1,
        )


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
    run_id, task_version = stamp
    id_column = task.id_column or ROW_INDEX_COLUMN
    fields = list(task.output_schema.model_fields)
    out: dict[str | None, list[dict[str, Any]]] = {p: [] for p in frames}
    bad: dict[str | None, list[dict[str, Any]]] = {p: [] for p in frames}
    now = datetime.now(UTC)
    for row in rows:
        res = resolved.get(row.key) if row.key else None
        error_class, error = row.pre_error or (None, None)
        if res is not None:
            error_class, error = res.error_class, res.error
        answer = res.answer if res is not None else None
        record: dict[str, Any] = {id_column: row.row_id, **row.extra}
        for name in fields:
            record[name] = answer.get(name) if answer else None
        record.update(
            llm_status=STATUS_OK if answer is not None else STATUS_FAILED,
            llm_error=None if answer is not None else error,
            llm_error_class=None if answer is not None else (error_class or "error"),
            llm_request_hash=(res.final_key if res else None) or row.key,
            llm_task_version=task_version,
            llm_model=res.model if res else None,
            llm_input_tokens=res.input_tokens if res else 0,
            llm_output_tokens=res.output_tokens if res else 0,
            llm_cost_usd=res.cost_usd if res else 0.0,
            llm_latency_s=res.latency_s if res else 0.0,
            llm_cached=res.cached if res else False,
            llm_repairs=res.repairs if res else 0,
            llm_paid_by_run_id=res.paid_by_run_id if res else None,
            llm_batch_id=res.batch_id if res else None,
            llm_run_id=run_id,
        )
        out[row.partition].append(record)
        summary = summaries[row.partition]
        if answer is not None:
            summary.ok += 1
        else:
            name = record["llm_error_class"]
            summary.count_failure(name)
            body = requests[row.key].body if row.key else row.pre_body
            bad[row.partition].append(
                {
                    id_column: row.row_id,
                    "partition": row.partition,
                    "error_class": name,
                    "error": record["llm_error"],
                    "request": canonical_json(body) if body is not None else None,
                    "llm_request_hash": record["llm_request_hash"],
                    "repairs": record["llm_repairs"],
                    "task_version": task_version,
                    "run_id": run_id,
                    "quarantined_at": now,
                }
            )
        if record["llm_model"]:
            summary.models.add(record["llm_model"])
    tables = {p: _frame(recs, id_column, task, passthrough) for p, recs in out.items()}
    quarantine = {p: _quarantine_frame(recs, id_column) for p, recs in bad.items()}
    return tables, quarantine


def _frame(
    records: list[dict[str, Any]], id_column: str, task: LLMTask, passthrough: tuple[str, ...]
) -> pd.DataFrame:
    empty = empty_output_frame(id_column, task.output_schema, passthrough)
    if not records:
        return empty
    df = pd.DataFrame.from_records(records, columns=list(empty.columns))
    return df.astype(PROVENANCE_COLUMNS)


def _quarantine_frame(records: list[dict[str, Any]], id_column: str) -> pd.DataFrame:
    columns = [id_column, *QUARANTINE_COLUMNS]
    if not records:
        empty = {id_column: pd.Series([], dtype="object")}
        empty.update({c: pd.Series([], dtype=t) for c, t in QUARANTINE_COLUMNS.items()})
        return pd.DataFrame(empty)
    return pd.DataFrame.from_records(records, columns=columns).astype(QUARANTINE_COLUMNS)
