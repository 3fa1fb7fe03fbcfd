"""``planned_asset``: a graph-backed asset where an LLM plans tool calls that run in parallel.

Graph: ``<name>_plan`` (one planner request per input row, validated plans, one
``DynamicOutput`` per batch of accepted calls) -> ``<name>_tools`` mapped over the batches
(``RetryPolicy`` with exponential backoff and jitter) -> collected into
``<name>_synthesize`` (one synthesizer request per row, with its tool results), whose output
is the asset. The plan and tool results are kept between steps by a pickling IO manager in
the instance's storage, so re-executing a failed run from failure reruns only the failed
tool steps and the synthesizer, and the ledger answers every LLM request already paid.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any, Unpack

import dagster as dg

from llm_assets.describe import output_column_schema, task_description
from llm_assets.endpoints import DEFAULT_KIND
from llm_assets.factory import upstream_key_of
from llm_assets.options import AssetOptions, ResolvedOptions
from llm_assets.planner.errors import ToolDefinitionError
from llm_assets.planner.ops import (
    INTERMEDIATE_IO_KEY,
    PlannerSpec,
    build_plan_op,
    build_synthesize_op,
    build_tool_op,
)
from llm_assets.planner.rows import (
    PLANNER_HASH_COLUMN,
    PLANNER_VERSION_COLUMN,
    TOOL_CALLS_COLUMN,
    TOOL_RESULTS_COLUMN,
)
from llm_assets.planner.task import PLANNER_SYSTEM_PROMPT, PlannedTask, planner_task
from llm_assets.planner.tools import Tool, allowlist
from llm_assets.task import LLMTask
from llm_assets.versions import register_llm_asset

#: Retry policy of the tool op when none is given: 3 retries, 1 s doubling, +/- jitter.
DEFAULT_TOOL_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

# One instance shared by every planner asset, so Definitions sees a single resource.
_INTERMEDIATES = dg.FilesystemIOManager().get_resource_definition()


def planned_asset(
    *,
    name: str,
    upstream: dg.AssetsDefinition | dg.AssetKey | str,
    planner_prompt: str,
    tools: Iterable[Tool | str],
    synthesizer: LLMTask,
    planner_model: str | None = None,
    planner_system_prompt: str = PLANNER_SYSTEM_PROMPT,
    planner_repair_attempts: int = 1,
    max_tool_calls: int = 64,
    max_calls_per_row: int = 8,
    calls_per_step: int = 1,
    step_threads: int = 1,
    tool_retry_policy: dg.RetryPolicy | None = None,
    **options: Unpack[AssetOptions],
) -> dg.AssetsDefinition:
    r"""Builds an asset where an LLM plans, per input row, calls to allowlisted tools.

    Every planned call is validated before anything runs: its tool must be registered and in
    ``tools``, its arguments must match the tool's model, and a row's plan must be valid
    JSON with at most ``max_calls_per_row`` calls; otherwise the row's whole plan is rejected
    (kept in the plan table and the row's ``tool_calls`` with the reason, logged, the row
    failed) and none of its calls run. A plan with more than ``max_tool_calls`` accepted calls
    fails the step before any tool runs. Accepted calls run as mapped steps,
    ``calls_per_step`` calls each, in parallel under the multiprocess executor.

    Args:
        name: Asset name (also the prefix of its ops).
        upstream: The asset whose rows are planned for (definition, key or "a/b" string).
        planner_prompt: ``str.format`` template of the planner's user message, over upstream
            columns (e.g. ``"Product: {product}\nReview: {body}"``).
        tools: The allowlist: ``Tool`` objects from ``@tool`` or registered names.
        synthesizer: The task answering each row; its prompt must use ``{tool_results}``
            (JSON list of the row's calls and results). Its schema shapes the output table.
        planner_model: Model of the planner; defaults to the synthesizer's.
        planner_system_prompt: Instructions of the planner.
        planner_repair_attempts: Follow-ups asking the planner again after an invalid plan.
        max_tool_calls: Fan-out cap: most accepted calls one run may start.
        max_calls_per_row: A row planning more calls is rejected.
        calls_per_step: Calls of one tool batched into one mapped step (raise it for small,
            fast tools: each step costs process start-up time).
        step_threads: Calls of one step run in up to this many threads (for thread-safe tools
            that wait on I/O); 1 runs them in order.
        tool_retry_policy: Retries of a failed tool step; default ``DEFAULT_TOOL_RETRY``.
        **options: What ``planned_asset`` and ``llm_asset`` share (``AssetOptions``):
            ``partitions_def``, ``prepare``, ``passthrough_columns``, ``max_cost_usd`` (of
            each LLM step: planner, synthesizer), ``group_name``, ``description``,
            ``llm_resource_key``, ``ledger_resource_key`` (needed by tools with side
            effects; ``None`` for no ledger), ``io_manager_key``, ``backfill_policy``,
            ``tags``.

    Returns:
        The graph-backed asset.

    Raises:
        ToolDefinitionError: Empty or unknown allowlist, a side-effecting tool without a
            ledger, or a synthesizer prompt without ``{tool_results}``.

    Examples:
        .. code-block:: python

            research = planned_asset(
                name="review_research",
                upstream=raw_reviews,
                planner_prompt="Product: {product}\nReview: {body}",
                tools=[product_stats, similar_reviews],
                synthesizer=LLMTask(name="research_note", user_prompt="Review: {body}\n"
                                    "Findings: {tool_results}", output_schema=Note,
                                    id_column="review_id"),
                max_tool_calls=50,
            )
            defs = dg.Definitions(assets=[raw_reviews, research], resources={...})
    """
    allowed = allowlist(tools)
    if TOOL_RESULTS_COLUMN not in synthesizer.template_variables:
        raise ToolDefinitionError(
            f"the synthesizer of planner asset '{name}' never shows the tool results: add "
            f"{{{TOOL_RESULTS_COLUMN}}} to its user_prompt or system_prompt"
        )
    opts = ResolvedOptions.of(options, upstream)
    effects = sorted(t.name for t in allowed.values() if t.side_effects)
    if effects and not opts.ledger_resource_key:
        raise ToolDefinitionError(
            f"tools with side effects ({', '.join(effects)}) record their idempotency keys in "
            f"the ledger; give planner asset '{name}' a ledger_resource_key"
        )
    for value, label in ((max_tool_calls, "max_tool_calls"), (calls_per_step, "calls_per_step")):
        if value < 1:
            raise ToolDefinitionError(f"{label} must be at least 1, got {value}")
    upstream_key = upstream_key_of(upstream)
    planner = planner_task(
        f"{name}_plan",
        planner_prompt,
        allowed,
        id_column=synthesizer.id_column,
        model=planner_model or synthesizer.model,
        system_prompt=planner_system_prompt,
        repair_attempts=planner_repair_attempts,
    )
    spec = PlannerSpec(
        asset=name,
        upstream=upstream_key.to_user_string(),
        planner=planner,
        synthesizer=synthesizer,
        tools=allowed,
        max_tool_calls=max_tool_calls,
        max_calls_per_row=max_calls_per_row,
        calls_per_step=calls_per_step,
        step_threads=step_threads,
        prepare=opts.prepare,
        passthrough=opts.passthrough_columns,
        max_cost_usd=opts.max_cost_usd,
        llm_key=opts.llm_resource_key,
        ledger_key=opts.ledger_resource_key,
        io_manager_key=opts.io_manager_key,
        retry_policy=tool_retry_policy or DEFAULT_TOOL_RETRY,
    )
    planned = PlannedTask.of(
        synthesizer, planner, {tool_name: t.fingerprint for tool_name, t in allowed.items()}
    )
    version = planned.version
    intro = _intro(spec, opts.description)
    plan_op, tool_op, synthesize_op = (
        build_plan_op(spec),
        build_tool_op(spec),
        build_synthesize_op(spec),
    )

    def _planned(upstream: Any) -> Any:
        plan, batches = plan_op(upstream)
        results = batches.map(tool_op)
        return synthesize_op(plan, results.collect())

    decorate = dg.graph_asset(
        name=name,
        ins={"upstream": dg.AssetIn(key=upstream_key)},
        partitions_def=opts.partitions_def,
        backfill_policy=opts.backfill_policy,
        group_name=opts.group_name,
        # Model and endpoint: resolve_model_versions names those actually configured.
        description=task_description(planned, upstream=spec.upstream, intro=intro),
        metadata=_definition_metadata(spec, version),
        tags=opts.tags,
        kinds={DEFAULT_KIND, "pandas"},
        code_version=version,
        resource_defs={INTERMEDIATE_IO_KEY: _INTERMEDIATES},
    )
    with warnings.catch_warnings():
        # resource_defs on a graph asset is marked beta in Dagster 1.13; it is what lets the
        # asset carry the IO manager of its intermediate outputs without user wiring.
        warnings.simplefilter("ignore", dg.BetaWarning)
        asset = decorate(_planned)
    register_llm_asset(
        dg.AssetKey(name),
        planned,
        opts.llm_resource_key,
        upstream=spec.upstream,
        intro=intro,
        definition=asset,
    )
    return asset


def _intro(spec: PlannerSpec, description: str | None) -> str:
    """The planner's part of the description: what it plans with; the synthesizer follows."""
    tools = "\n".join(
        f"- `{t.name}`{' (side effects)' if t.side_effects else ''}: {t.description}"
        for t in sorted(spec.tools.values(), key=lambda t: t.name)
    )
    planner_model = f"`{spec.planner.model}`" if spec.planner.model else "the synthesizer's"
    return "\n".join(
        [
            description
            or f"Planner asset: for each row of `{spec.upstream}`, an LLM plans calls to the "
            f"tools below; the synthesizer task `{spec.synthesizer.name}` answers the row from "
            "their results.",
            "",
            f"**Tools** (at most {spec.max_calls_per_row} calls a row, {spec.max_tool_calls} "
            "a run)",
            "",
            tools,
            "",
            f"**Planner prompt** (model: {planner_model}; its cost is estimated at "
            f"{spec.planner.output_tokens_for_estimates} output tokens a request)",
            "",
            f"```text\n{spec.planner.user_prompt}\n```",
            "",
            "**Synthesizer** (model, prompts and output schema below)",
        ]
    )


def _definition_metadata(spec: PlannerSpec, version: str) -> dict[str, Any]:
    schema = output_column_schema(spec.synthesizer, spec.passthrough)
    columns = [
        *schema.columns,
        dg.TableColumn(PLANNER_HASH_COLUMN, "string", "ledger key of the planner request"),
        dg.TableColumn(PLANNER_VERSION_COLUMN, "string", "version of the planner task"),
        dg.TableColumn(TOOL_CALLS_COLUMN, "string", "JSON list of the calls that fed the row"),
    ]
    return {
        "task_version": version,
        "synthesizer_task_version": spec.synthesizer.version,
        "planner_task_version": spec.planner.version,
        "model": spec.synthesizer.model or "(LLMResource.model)",
        "tools": dg.MetadataValue.json(
            {
                t.name: {
                    "description": t.description,
                    "side_effects": t.side_effects,
                    "version": t.version,
                }
                for t in spec.tools.values()
            }
        ),
        "planner_prompt": dg.MetadataValue.md(f"```\n{spec.planner.user_prompt}\n```"),
        "synthesizer_prompt": dg.MetadataValue.md(f"```\n{spec.synthesizer.user_prompt}\n```"),
        "max_tool_calls": spec.max_tool_calls,
        "calls_per_step": spec.calls_per_step,
        "dagster/column_schema": dg.TableSchema(columns=columns),
    }
