"""From plans and tool results to the planner asset's table, row by row.

Rows whose plan was valid are answered by the synthesizer task (with their tool results in
the ``tool_results`` column of its prompt); rows whose plan was rejected keep the planner's
provenance and fail with the reason. Every output row lists the tool calls that fed it in
``tool_calls`` (JSON) and the planner request that planned them in ``planner_request_hash``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from llm_assets.planner.plan import ACCEPTED, RowPlan
from llm_assets.provenance import PROVENANCE_COLUMNS, STATUS_FAILED
from llm_assets.summary import StepSummary

#: Synthesizer prompt variable (and column) holding a row's tool results as JSON text.
TOOL_RESULTS_COLUMN = "tool_results"
#: Output column: JSON list of the row's planned calls with status, result, duration, attempts.
TOOL_CALLS_COLUMN = "tool_calls"
#: Output column: ledger key of the planner request that planned the row's calls.
PLANNER_HASH_COLUMN = "planner_request_hash"
PLANNER_VERSION_COLUMN = "planner_task_version"


@dataclass(frozen=True)
class ToolOutcome:
    """What running one accepted call produced."""

    call_id: str
    result: dict[str, Any]
    duration_s: float
    attempts: int
    reused: bool
    started_at: float
    finished_at: float


@dataclass
class PlannerOutput:
    """What the planner step hands to the collecting step (stored between steps)."""

    frames: dict[str | None, pd.DataFrame]
    plans: dict[str | None, list[RowPlan]]
    planner_tables: dict[str | None, pd.DataFrame]
    planner_summaries: dict[str | None, StepSummary]
    planner_version: str

    def calls(self) -> list[Any]:
        """Every checked call of every row, in plan order."""
        return [call for rows in self.plans.values() for row in rows for call in row.calls]


def call_records(row: RowPlan, outcomes: Mapping[str, ToolOutcome]) -> list[dict[str, Any]]:
    """The row's calls as JSON-able records, with their outcomes where they ran."""
    records = []
    for call in row.calls:
        record: dict[str, Any] = asdict(call)
        outcome = outcomes.get(call.call_id)
        if outcome is not None:
            record.update(
                status="ok",
                result=outcome.result,
                duration_s=round(outcome.duration_s, 4),
                attempts=outcome.attempts,
                reused=outcome.reused,
            )
        records.append(record)
    return records


def synthesizer_frame(
    frame: pd.DataFrame, plans: Sequence[RowPlan], outcomes: Mapping[str, ToolOutcome]
) -> pd.DataFrame:
    """The rows whose plan was valid, each with its tool results as JSON text."""
    keep = [plan.runnable for plan in plans]
    ok = frame.loc[keep].copy()
    ok[TOOL_RESULTS_COLUMN] = [
        json.dumps(
            [
                {"tool": c.tool, "arguments": c.arguments, "result": outcomes[c.call_id].result}
                for c in plan.calls
                if c.status == ACCEPTED
            ],
            ensure_ascii=False,
            sort_keys=True,
        )
        for plan in plans
        if plan.runnable
    ]
    return ok


def assemble(
    synthesized: pd.DataFrame,
    planner_table: pd.DataFrame,
    plans: Sequence[RowPlan],
    outcomes: Mapping[str, ToolOutcome],
    planner_version: str,
    summary: StepSummary,
) -> pd.DataFrame:
    """The partition's output table in input order; rejected rows fail with their reason.

    ``summary`` (the synthesizer's) is updated to count the rejected rows as failed rows.
    """
    rejected_rows = []
    for position, plan in enumerate(plans):
        if plan.runnable:
            continue
        record = {
            c: planner_table.iloc[position][c]
            for c in planner_table.columns
            if c != "calls" and c in synthesized.columns
        }
        record.update(
            llm_status=STATUS_FAILED,
            llm_error=plan.error,
            llm_error_class=plan.error_class,
        )
        rejected_rows.append(record)
        summary.rows += 1
        summary.count_failure(plan.error_class or "plan_rejected")
    rejected = pd.DataFrame.from_records(rejected_rows, columns=list(synthesized.columns))
    frames = [df for df in (synthesized, rejected) if not df.empty]
    table = pd.concat(frames, ignore_index=True) if frames else synthesized.copy()
    order = [i for i, p in enumerate(plans) if p.runnable] + [
        i for i, p in enumerate(plans) if not p.runnable
    ]
    table.index = pd.Index(order)
    table = table.sort_index().reset_index(drop=True)
    table = table.astype({c: t for c, t in PROVENANCE_COLUMNS.items() if c in table.columns})
    table[PLANNER_HASH_COLUMN] = pd.Series(
        list(planner_table["llm_request_hash"]) if len(planner_table) else [], dtype="string"
    )
    table[PLANNER_VERSION_COLUMN] = pd.Series([planner_version] * len(table), dtype="string")
    table[TOOL_CALLS_COLUMN] = pd.Series(
        [json.dumps(call_records(p, outcomes), default=str) for p in plans], dtype="string"
    )
    return table
