"""What a planner asset shows in the UI: the plan as a table, and the synthesizer's inputs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.planner.plan import ACCEPTED, CheckedCall, RowPlan
from llm_assets.planner.rows import TOOL_RESULTS_COLUMN, PlannerOutput, ToolOutcome
from llm_assets.results import markdown_preview
from llm_assets.summary import StepSummary, summary_metadata

#: At most this many calls are listed in the plan table (the counts cover them all).
PLAN_TABLE_LIMIT = 200

PLAN_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("call_id", "string"),
        dg.TableColumn("row_id", "string"),
        dg.TableColumn("tool", "string"),
        dg.TableColumn("args", "string"),
        dg.TableColumn("status", "string"),
        dg.TableColumn("duration_s", "float"),
        dg.TableColumn("attempts", "int"),
        dg.TableColumn("reason", "string"),
    ]
)


def plan_table(
    calls: Sequence[CheckedCall], outcomes: Mapping[str, ToolOutcome]
) -> dg.MetadataValue:
    """The plan as a table: tool, args, status, duration and attempts of each call."""
    records = []
    for call in calls[:PLAN_TABLE_LIMIT]:
        outcome = outcomes.get(call.call_id)
        status = call.status
        if outcome is not None:
            status = "reused" if outcome.reused else "ok"
        records.append(
            dg.TableRecord(
                {
                    "call_id": call.call_id,
                    "row_id": call.row_id,
                    "tool": call.tool,
                    "args": (call.raw_arguments or "")[:300],
                    "status": status,
                    "duration_s": round(outcome.duration_s, 3) if outcome else 0.0,
                    "attempts": outcome.attempts if outcome else 0,
                    "reason": call.reason or "",
                }
            )
        )
    return dg.MetadataValue.table(records=records, schema=PLAN_TABLE_SCHEMA)


def plan_figures(plans: Sequence[RowPlan], outcomes: Mapping[str, ToolOutcome]) -> dict[str, Any]:
    """Counts of the plan: calls by status and tool, rows rejected, time spent in tools."""
    calls = [call for row in plans for call in row.calls]
    accepted = [c for c in calls if c.status == ACCEPTED]
    ran = [outcomes[c.call_id] for c in accepted if c.call_id in outcomes]
    return {
        "tool_calls": len(calls),
        "tool_calls_run": sum(1 for o in ran if not o.reused),
        "tool_calls_reused": sum(1 for o in ran if o.reused),
        "tool_calls_rejected": sum(1 for c in calls if c.status != ACCEPTED),
        "rows_plan_rejected": sum(1 for row in plans if not row.runnable),
        "tool_seconds": round(sum(o.duration_s for o in ran), 3),
        "calls_by_tool": dg.MetadataValue.json(dict(Counter(c.tool for c in accepted))),
    }


def synthesizer_inputs(frame: pd.DataFrame, id_column: str) -> dg.MetadataValue:
    """A preview of what the synthesizer was given: row ids and their tool results."""
    return dg.MetadataValue.md(markdown_preview(frame, [id_column, TOOL_RESULTS_COLUMN]))


def rejection_lines(asset: str, plans: Sequence[RowPlan], limit: int = 20) -> list[str]:
    """Run-log lines naming each rejected row and why (the first ``limit`` of them)."""
    bad = [row for row in plans if not row.runnable]
    lines = [
        f"{asset}: row {row.row_id} (partition {row.partition}): plan {row.error_class}: "
        f"{row.error}; none of its calls run"
        for row in bad[:limit]
    ]
    if len(bad) > limit:
        lines.append(f"{asset}: ... and {len(bad) - limit} more rows with rejected plans")
    return lines


def asset_metadata(
    plan: PlannerOutput,
    summaries: Mapping[str | None, StepSummary],
    task_version: str,
    outcomes: Mapping[str, ToolOutcome],
    synthesizer_model: str | None,
) -> dict[str, Any]:
    """The materialization's metadata: the synthesizer's figures, the plan and its figures."""
    rows = [row for rows in plan.plans.values() for row in rows]
    planner = StepSummary.total(plan.planner_summaries.values())
    metadata = summary_metadata(
        StepSummary.total(summaries.values()),
        task_version=task_version,
        default_model=synthesizer_model or "(LLMResource.model)",
    )
    metadata.update(plan_figures(rows, outcomes))
    metadata.update(
        plan=plan_table(plan.calls(), outcomes),
        planner_task_version=plan.planner_version,
        planner_requests_sent=planner.requests_sent,
        planner_cache_hits=planner.cache_hits,
        planner_cost_usd=round(planner.cost_usd, 6),
    )
    return metadata
