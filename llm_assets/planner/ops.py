"""The three ops of a planner asset: plan, run tools (mapped), synthesize (collected).

``plan`` asks the planner task for every input row through ``run_task`` (same resource,
limiter and ledger as ``llm_asset``), validates each row's plan, enforces the fan-out cap and
yields one ``DynamicOutput`` per batch of accepted calls. ``run_tools`` runs one batch under
a ``RetryPolicy``. ``synthesize`` receives the collected results and answers the synthesizer
task for every row whose plan was valid.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.describe import readable_rows, trace_hint
from llm_assets.factory import frames_by_partition
from llm_assets.options import Prepare
from llm_assets.planner.calls import CallContext, run_calls
from llm_assets.planner.errors import PlanTooLargeError
from llm_assets.planner.lineage import (
    asset_metadata,
    plan_figures,
    plan_table,
    rejection_lines,
    synthesizer_inputs,
)
from llm_assets.planner.plan import (
    ACCEPTED,
    CheckedCall,
    RowPlan,
    ToolBatch,
    batch_calls,
    check_row,
)
from llm_assets.planner.rows import PlannerOutput, ToolOutcome, assemble, synthesizer_frame
from llm_assets.planner.tools import Tool
from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.results import markdown_preview
from llm_assets.runner import StepInfo, run_task
from llm_assets.summary import run_line
from llm_assets.task import LLMTask

#: Resource key of the IO manager that keeps the plan and tool results between steps.
INTERMEDIATE_IO_KEY = "llm_assets_planner_io"


@dataclass(frozen=True)
class PlannerSpec:
    """Everything the ops of one planner asset need to know."""

    asset: str
    upstream: str
    planner: LLMTask
    synthesizer: LLMTask
    tools: Mapping[str, Tool]
    max_tool_calls: int
    max_calls_per_row: int
    calls_per_step: int
    step_threads: int
    prepare: Prepare | None
    passthrough: tuple[str, ...]
    max_cost_usd: float | None
    llm_key: str
    ledger_key: str | None
    io_manager_key: str
    retry_policy: dg.RetryPolicy

    @property
    def id_column(self) -> str:
        """The id column of the input and output rows."""
        return self.synthesizer.id_column or ROW_INDEX_COLUMN

    def llm_keys(self) -> set[str]:
        """Resources of the LLM steps."""
        return {self.llm_key, self.ledger_key} if self.ledger_key else {self.llm_key}


def _partition_keys(context: dg.OpExecutionContext) -> list[str | None]:
    if context.has_partition_key_range or context.has_partition_key:
        return list(context.partition_keys)
    return [None]


def _resources(context: dg.OpExecutionContext, spec: PlannerSpec) -> tuple[Any, Any]:
    llm = getattr(context.resources, spec.llm_key)
    ledger = getattr(context.resources, spec.ledger_key) if spec.ledger_key else None
    return llm, ledger


def _step(context: dg.OpExecutionContext, spec: PlannerSpec) -> StepInfo:
    return StepInfo(run_id=context.run.run_id, asset_key=spec.asset, upstream=spec.upstream)


def build_plan_op(spec: PlannerSpec) -> dg.OpDefinition:
    """The op that plans every row and fans out one dynamic output per batch of calls."""

    @dg.op(
        name=f"{spec.asset}_plan",
        ins={"upstream": dg.In(dg.Any)},
        out={
            "plan": dg.Out(dg.Any, io_manager_key=INTERMEDIATE_IO_KEY),
            "batches": dg.DynamicOut(dg.Any, io_manager_key=INTERMEDIATE_IO_KEY),
        },
        required_resource_keys=spec.llm_keys(),
        tags={"kind": "llm-planner"},
    )
    def _plan(context: dg.OpExecutionContext, upstream: Any) -> Iterator[Any]:
        frames = frames_by_partition(upstream, _partition_keys(context))
        if spec.prepare is not None:
            frames = {key: spec.prepare(df, key) for key, df in frames.items()}
        llm, ledger = _resources(context, spec)
        output = run_task(
            spec.planner,
            frames,
            llm=llm,
            ledger=ledger,
            step=_step(context, spec),
            log=context.log,
            max_cost_usd=spec.max_cost_usd,
        )
        plans: dict[str | None, list[RowPlan]] = {}
        index = 0
        for partition, table in output.tables.items():
            plans[partition] = []
            for record in table.to_dict("records"):
                row_id = str(record[spec.id_column])
                if record["llm_status"] != "ok":
                    row = RowPlan(
                        partition, row_id, (), record["llm_error_class"], record["llm_error"]
                    )
                else:
                    row = check_row(
                        {"calls": list(record["calls"])},
                        allowed=spec.tools,
                        asset=spec.asset,
                        partition=partition,
                        row_id=row_id,
                        first_index=index,
                        max_calls_per_row=spec.max_calls_per_row,
                    )
                index += len(row.calls)
                plans[partition].append(row)
        result = PlannerOutput(frames, plans, output.tables, output.summaries, output.task_version)
        all_rows = [row for rows in plans.values() for row in rows]
        for line in rejection_lines(spec.asset, all_rows):
            context.log.warning(line)
        accepted = [c for c in result.calls() if c.status == ACCEPTED]
        if len(accepted) > spec.max_tool_calls:
            by_tool: dict[str, int] = {}
            for call in accepted:
                by_tool[call.tool] = by_tool.get(call.tool, 0) + 1
            per_tool = ", ".join(f"{k}={v}" for k, v in sorted(by_tool.items()))
            raise PlanTooLargeError(spec.asset, len(accepted), spec.max_tool_calls, per_tool)
        batches = batch_calls(accepted, spec.calls_per_step)
        context.log.info(
            f"{spec.asset}: planned {len(result.calls())} tool calls for {len(all_rows)} rows: "
            f"{len(accepted)} accepted in {len(batches)} step(s), "
            f"{len(result.calls()) - len(accepted)} rejected or skipped"
        )
        yield dg.Output(
            result,
            "plan",
            metadata={
                "plan": plan_table(result.calls(), {}),
                **plan_figures(all_rows, {}),
                "planner_requests_sent": output.summary.requests_sent,
                "planner_cache_hits": output.summary.cache_hits,
            },
        )
        for key, batch in batches.items():
            yield dg.DynamicOutput(batch, mapping_key=key, output_name="batches")

    return _plan


def build_tool_op(spec: PlannerSpec) -> dg.OpDefinition:
    """The mapped op that runs one batch of accepted calls, retried by ``spec.retry_policy``."""
    needs_ledger = any(t.side_effects for t in spec.tools.values())
    keys = {spec.ledger_key} if needs_ledger and spec.ledger_key else set()

    @dg.op(
        name=f"{spec.asset}_tools",
        ins={"batch": dg.In(dg.Any)},
        out=dg.Out(dg.Any, io_manager_key=INTERMEDIATE_IO_KEY),
        retry_policy=spec.retry_policy,
        required_resource_keys=keys,
        tags={"kind": "llm-tools"},
    )
    def _tools(context: dg.OpExecutionContext, batch: ToolBatch) -> list[ToolOutcome]:
        attempt = context.retry_number + 1
        where = CallContext(
            tools=spec.tools,
            ledger=getattr(context.resources, spec.ledger_key)
            if keys and spec.ledger_key
            else None,
            run_id=context.run.run_id,
            asset=spec.asset,
            attempt=attempt,
        )

        def log(call: CheckedCall, outcome: ToolOutcome) -> None:
            context.log.info(
                f"{spec.asset}: {call.call_id} {call.tool} "
                f"{'reused its recorded effect' if outcome.reused else 'ok'} "
                f"in {outcome.duration_s:.2f}s (attempt {attempt})"
            )

        return run_calls(batch.calls, where, spec.step_threads, log)

    return _tools


def build_synthesize_op(spec: PlannerSpec) -> dg.OpDefinition:
    """The collecting op: answers the synthesizer for each row and yields the asset's table."""

    @dg.op(
        name=f"{spec.asset}_synthesize",
        ins={"plan": dg.In(dg.Any), "results": dg.In(dg.Any)},
        out=dg.Out(dg.Any, io_manager_key=spec.io_manager_key),
        required_resource_keys=spec.llm_keys(),
        tags={"kind": "llm-synthesizer"},
    )
    def _synthesize(
        context: dg.OpExecutionContext, plan: PlannerOutput, results: list[list[ToolOutcome]]
    ) -> dg.Output[Any]:
        outcomes = {o.call_id: o for batch in results for o in batch}
        frames = {
            p: synthesizer_frame(plan.frames[p], plan.plans[p], outcomes) for p in plan.frames
        }
        llm, ledger = _resources(context, spec)
        output = run_task(
            spec.synthesizer,
            frames,
            llm=llm,
            ledger=ledger,
            step=_step(context, spec),
            log=context.log,
            max_cost_usd=spec.max_cost_usd,
            passthrough_columns=spec.passthrough,
        )
        tables = {
            p: assemble(
                output.tables[p],
                plan.planner_tables[p],
                plan.plans[p],
                outcomes,
                plan.planner_version,
                output.summaries[p],
            )
            for p in plan.frames
        }
        context.log.info(run_line(spec.asset, output.summaries))
        metadata = asset_metadata(
            plan, output.summaries, output.task_version, outcomes, spec.synthesizer.model
        )
        metadata["synthesizer_inputs"] = synthesizer_inputs(
            pd.concat(list(frames.values())) if frames else pd.DataFrame(), spec.id_column
        )
        preview = pd.concat(list(tables.values())) if tables else pd.DataFrame()
        columns = [
            spec.id_column,
            *spec.synthesizer.output_schema.model_fields,
            "llm_status",
            "llm_error",
        ]
        shown = markdown_preview(readable_rows(preview, columns), columns)
        if len(preview) and spec.id_column in preview.columns:
            first = next(p for p, table in tables.items() if len(table))
            row = preview[spec.id_column].iloc[0]
            shown += "\n\n" + trace_hint(spec.asset, first, row)
        metadata["preview"] = dg.MetadataValue.md(shown)
        value = tables[next(iter(tables))] if len(tables) == 1 else dict(tables)
        return dg.Output(value, metadata=metadata)

    return _synthesize
