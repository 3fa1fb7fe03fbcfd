"""What an ``llm_asset`` step reports to Dagster: per-partition metadata, tables and checks.

Dagster copies one ``MaterializeResult``'s metadata to every partition of a range, so a step
over several partitions attaches each partition's own figures with
``context.add_asset_metadata(..., partition_key=...)`` and judges the ``failure_rate`` check
once per partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.runner import StepOutput
from llm_assets.summary import StepSummary, run_line, summary_metadata

FAILURE_RATE_CHECK = "failure_rate"

Report = Callable[[pd.DataFrame], Mapping[str, Any]]
Event = (
    dg.MaterializeResult
    | dg.AssetCheckResult
    | dg.AssetCheckEvaluation
    | dg.AssetMaterialization
    | dg.AssetObservation
    | dg.Output[None]
)
WAITING_CHECK = "evaluated when the batch is assembled: its rows are not answered yet"


def markdown_preview(df: pd.DataFrame, columns: Sequence[str], limit: int = 5) -> str:
    """A small Markdown table of the first rows, for the UI.

    Examples:
        >>> print(markdown_preview(pd.DataFrame({"a": [1]}), ["a"]))
        | a |
        | --- |
        | 1 |
    """
    shown = [c for c in columns if c in df.columns]
    lines = ["| " + " | ".join(shown) + " |", "| " + " | ".join("---" for _ in shown) + " |"]
    for _, row in df.head(limit).iterrows():
        cells = [str(row[c]).replace("|", "\\|").replace("\n", " ")[:80] for c in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class AssetNames:
    """The keys one ``llm_asset`` reports on, and how its tables are shown."""

    table: dg.AssetKey
    quarantine: dg.AssetKey
    preview_columns: tuple[str, ...]
    default_model: str
    max_failure_rate: float
    io_manager_key: str


def partition_metadata(
    names: AssetNames,
    summary: StepSummary,
    table: pd.DataFrame,
    task_version: str,
    report: Report | None,
) -> dict[str, Any]:
    """The metadata of one partition of the output table."""
    metadata = summary_metadata(
        summary, task_version=task_version, default_model=names.default_model
    )
    metadata["preview"] = dg.MetadataValue.md(markdown_preview(table, names.preview_columns))
    if report is not None:
        metadata.update(report(table))
    return metadata


def check_metadata(summary: StepSummary, threshold: float) -> dict[str, Any]:
    """What the ``failure_rate`` check shows for one partition."""
    return {
        "failure_rate": round(summary.failure_rate, 4),
        "threshold": threshold,
        "failed": summary.failed,
        "rows": summary.rows,
        "failures_by_class": dg.MetadataValue.json(summary.error_classes),
    }


def step_events(
    context: dg.AssetExecutionContext,
    names: AssetNames,
    output: StepOutput,
    report: Report | None,
    extra: Mapping[str | None, Mapping[str, Any]] | None = None,
) -> Iterator[Event]:
    """Yields the step's results: tables, quarantine, per-partition metadata and checks.

    ``extra`` adds metadata to each partition of the table (the review gate's figures).
    """
    if output.waiting:
        yield from _waiting_events(context, names, output)
        return
    keys = list(output.tables)
    partitioned = keys != [None]
    context.log.info(run_line(names.table.to_user_string(), output.summaries))
    table_meta = {
        key: partition_metadata(
            names, output.summaries[key], output.tables[key], output.task_version, report
        )
        for key in keys
    }
    for key, more in (extra or {}).items():
        table_meta[key].update(more)
    quarantine_meta = {
        key: {
            "dagster/row_count": output.summaries[key].failed,
            "rows": output.summaries[key].failed,
        }
        for key in keys
    }
    selected = context.selected_asset_keys
    if names.table in selected:
        yield _materialize(context, names.table, output.tables, table_meta)
    if names.quarantine in selected:
        yield _materialize(context, names.quarantine, output.quarantine, quarantine_meta)
    elif names.table in selected:
        # Failed rows always reach the dead-letter table, even when only the table was selected.
        yield from _store_quarantine(context, names, output, quarantine_meta)
    check_key = dg.AssetCheckKey(names.table, FAILURE_RATE_CHECK)
    if check_key not in context.selected_asset_check_keys:
        return
    ranged = partitioned and len(keys) > 1
    for key in keys:
        summary = output.summaries[key]
        passed = summary.failure_rate <= names.max_failure_rate
        metadata = check_metadata(summary, names.max_failure_rate)
        if ranged:
            # One evaluation per partition of the range (a check result would cover them all).
            yield dg.AssetCheckEvaluation(
                asset_key=names.table,
                check_name=FAILURE_RATE_CHECK,
                passed=passed,
                metadata=metadata,
                partition=key,
            )
        else:
            yield dg.AssetCheckResult(
                asset_key=names.table,
                check_name=FAILURE_RATE_CHECK,
                passed=passed,
                metadata=metadata,
            )
    if ranged:
        # Dagster counts only a check result as the check's output, not evaluations.
        yield _check_output(context, check_key)


def _materialize(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    tables: Mapping[str | None, pd.DataFrame],
    metadata: Mapping[str | None, Mapping[str, Any]],
) -> dg.MaterializeResult:
    """One result for the step; over a range, each partition's metadata attached to it alone."""
    if len(tables) == 1:
        ((partition, table),) = tables.items()
        return dg.MaterializeResult(asset_key=key, value=table, metadata=dict(metadata[partition]))
    for partition in tables:
        context.add_asset_metadata(
            dict(metadata[partition]), asset_key=key, partition_key=partition
        )
    return dg.MaterializeResult(asset_key=key, value=dict(tables))


def _store_quarantine(
    context: dg.AssetExecutionContext,
    names: AssetNames,
    output: StepOutput,
    metadata: Mapping[str | None, Mapping[str, Any]],
) -> Iterator[dg.AssetMaterialization]:
    io_manager = getattr(context.resources, names.io_manager_key)
    for key, table in output.quarantine.items():
        # The step's own resources: a mapping would start an ephemeral instance per partition.
        out_context = dg.build_output_context(
            asset_key=names.quarantine, partition_key=key, resources=context.resources
        )
        io_manager.handle_output(out_context, table)
        yield dg.AssetMaterialization(
            asset_key=names.quarantine, partition=key, metadata=dict(metadata[key])
        )


def _waiting_events(
    context: dg.AssetExecutionContext, names: AssetNames, output: StepOutput
) -> Iterator[dg.AssetObservation | dg.Output[None]]:
    """A step in batch mode that submitted or waits: an observation per waiting partition.

    The ``failure_rate`` check is not evaluated: no row of a waiting partition is answered
    yet, so it could neither pass nor fail truthfully. The step says so in its log and yields
    the check's empty output; Dagster shows the run's check as skipped, and the run that
    assembles the batch evaluates it.
    """
    plan = output.batch
    assert plan is not None
    submitted = {record.batch_id: record for record in plan.submitted}
    for partition, batch_ids in plan.pending.items():
        summary = output.summaries[partition]
        requests = sum(len(submitted[b].request_keys) for b in batch_ids if b in submitted)
        yield dg.AssetObservation(
            asset_key=names.table,
            partition=partition,
            metadata={
                "batch_ids": ", ".join(batch_ids),
                "batch_state": "submitted" if requests else "waiting for a live batch",
                "batch_requests_submitted": requests,
                "rows": summary.rows,
                "answered_by_ledger": summary.cache_hits,
                "answered_by_batch": summary.batch_answered,
                "estimated_online_cost_usd": round(summary.estimated_cost_usd, 4),
                "task_version": output.task_version,
                f"{FAILURE_RATE_CHECK}_check": WAITING_CHECK,
            },
        )
    context.log.info(
        f"{names.table.to_user_string()}: {len(plan.pending)} partition(s) wait for batches "
        f"({', '.join(sorted({b for ids in plan.pending.values() for b in ids}))}); the table "
        "is materialized by the batch sensor's run once they finish"
    )
    check_key = dg.AssetCheckKey(names.table, FAILURE_RATE_CHECK)
    if check_key in context.selected_asset_check_keys:
        context.log.info(
            f"{names.table.to_user_string()}: check '{FAILURE_RATE_CHECK}' not evaluated in "
            f"this run; it is {WAITING_CHECK}"
        )
        yield _check_output(context, check_key)


def _check_output(context: dg.AssetExecutionContext, key: dg.AssetCheckKey) -> dg.Output[None]:
    """The check's empty output: the step yields what Dagster expects of it, evaluating nothing.

    Without it Dagster logs "did not yield or return expected outputs" for a check the step
    evaluated per partition (``AssetCheckEvaluation``) or left for the batch's assembly.
    """
    return dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
