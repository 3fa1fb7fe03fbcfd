"""``llm_asset``: turns an ``LLMTask`` and an upstream asset into a partitioned Dagster asset."""

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from llm_assets.planning import ROW_INDEX_COLUMN
from llm_assets.provenance import PROVENANCE_COLUMNS, QUARANTINE_COLUMNS
from llm_assets.resources.errors import UserError
from llm_assets.runner import StepInfo, StepSummary, run_task
from llm_assets.task import LLMTask

Prepare = Callable[[pd.DataFrame, str | None], pd.DataFrame]
Report = Callable[[pd.DataFrame], Mapping[str, Any]]


FAILURE_RATE_CHECK = "failure_rate"


class LLMAssetConfig(dg.Config):
    """Run config of an ``llm_asset`` (set it in the launchpad or with ``run_config``)."""

    max_cost_usd: float | None = Field(
        default=None,
        description="Budget for this run's new spend on this asset; overrides the asset's.",
    )


def _key_of(upstream: dg.AssetsDefinition | dg.AssetKey | str) -> dg.AssetKey:
    if isinstance(upstream, dg.AssetsDefinition):
        if len(upstream.keys) == 1:
            return upstream.key
        # An llm_asset is a multi-asset (table + quarantine): its table is named like its op.
        named = [k for k in upstream.keys if k.path[-1] == upstream.node_def.name]
        if len(named) == 1:
            return named[0]
        keys = ", ".join(sorted(k.to_user_string() for k in upstream.keys))
        raise UserError(
            f"upstream defines several assets ({keys}); pass upstream=dg.AssetKey(...) to "
            "say which one to prompt"
        )
    return upstream if isinstance(upstream, dg.AssetKey) else dg.AssetKey.from_user_string(upstream)


def output_column_schema(task: LLMTask, passthrough: Sequence[str] = ()) -> dg.TableSchema:
    """The table schema of an ``llm_asset``: id, answer fields, provenance columns."""
    columns = [dg.TableColumn(task.id_column or ROW_INDEX_COLUMN, "object", "input row id")]
    columns += [dg.TableColumn(name, "object", "copied from upstream") for name in passthrough]
    for name, info in task.output_schema.model_fields.items():
        annotation = getattr(info.annotation, "__name__", str(info.annotation))
        columns.append(dg.TableColumn(name, annotation, info.description or "LLM answer field"))
    columns += [dg.TableColumn(name, dtype) for name, dtype in PROVENANCE_COLUMNS.items()]
    return dg.TableSchema(columns=columns)


def quarantine_column_schema(task: LLMTask) -> dg.TableSchema:
    """The table schema of an ``llm_asset``'s quarantine table."""
    columns = [dg.TableColumn(task.id_column or ROW_INDEX_COLUMN, "object", "input row id")]
    columns += [dg.TableColumn(name, dtype) for name, dtype in QUARANTINE_COLUMNS.items()]
    return dg.TableSchema(columns=columns)


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


def summary_metadata(task: LLMTask, summary: StepSummary) -> dict[str, Any]:
    """Materialization metadata: rows, outcome, spend, and what the ledger saved."""
    return {
        "dagster/row_count": summary.rows,
        "rows": summary.rows,
        "ok": summary.ok,
        "failed": summary.failed,
        "requests_sent": summary.requests_sent,
        "cache_hits": summary.cache_hits,
        "hit_ratio": round(summary.hit_ratio, 4),
        "duplicates_collapsed": summary.duplicates_collapsed,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "tokens": summary.input_tokens + summary.output_tokens,
        "cost_usd": round(summary.cost_usd, 6),
        "saved_usd": round(summary.saved_usd, 6),
        "estimated_cost_usd": round(summary.estimated_cost_usd, 6),
        "task_version": task.version,
        "model": ", ".join(sorted(summary.models)) or (task.model or "(resource default)"),
        "repairs": summary.repairs,
        "failure_rate": round(summary.failure_rate, 4),
        "failures_by_class": dg.MetadataValue.json(summary.error_classes),
    }


def llm_asset(
    task: LLMTask,
    *,
    upstream: dg.AssetsDefinition | dg.AssetKey | str,
    name: str | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    prepare: Prepare | None = None,
    passthrough_columns: Sequence[str] = (),
    report: Report | None = None,
    max_cost_usd: float | None = None,
    group_name: str | None = None,
    description: str | None = None,
    llm_resource_key: str = "llm",
    ledger_resource_key: str | None = "ledger",
    io_manager_key: str = "io_manager",
    backfill_policy: dg.BackfillPolicy | None = None,
    tags: Mapping[str, str] | None = None,
    max_failure_rate: float = 0.05,
    block_downstream_on_failures: bool = False,
) -> dg.AssetsDefinition:
    """Builds the assets that answer ``task`` for every row of ``upstream``'s partition.

    The asset has the upstream's partitions (daily, static, dynamic or multi) unless told
    otherwise, and by default a single-run backfill policy: a 30-day backfill is one run whose
    prompts share one pool of concurrent requests. Its ``code_version`` is ``task.version``.
    The output table holds the id column, the answer's fields and the provenance columns of
    ``llm_assets.provenance.PROVENANCE_COLUMNS``. A second asset, ``<name>_quarantine``, holds
    the rows that failed (request, error class, message), and a ``failure_rate`` asset check
    fails when too many rows failed. ``ok + failed`` always equals the input rows.

    Args:
        task: What to ask.
        upstream: The asset whose rows are prompted (definition, key or "a/b" string).
        name: Asset name; defaults to ``task.name``.
        partitions_def: Partitions; defaults to the upstream definition's.
        prepare: ``prepare(table, partition_key)`` turns an upstream partition's table into
            the rows to prompt (e.g. one row per day that gathers the day's insights).
        passthrough_columns: Upstream columns copied to the output next to the id.
        report: Extra materialization metadata computed from the output table.
        max_cost_usd: Budget of new spend per materialization (run config can override).
        group_name: Dagster asset group.
        description: Asset description; defaults to the task's prompt.
        llm_resource_key: Resource key of the ``LLMResource``.
        ledger_resource_key: Resource key of the ``ResponseLedger``; ``None`` for no ledger.
        io_manager_key: IO manager storing the output (``ParquetIOManager`` by default).
        backfill_policy: Defaults to ``BackfillPolicy.single_run()`` for partitioned assets.
        tags: Asset tags.
        max_failure_rate: The ``failure_rate`` asset check fails above this share of failed
            rows.
        block_downstream_on_failures: Make that check blocking, so downstream assets do not
            run on a partition that failed it.

    Returns:
        The asset definition.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import LLMTask, llm_asset
            from llm_assets.resources import LLMResource, ParquetIOManager, ResponseLedger

            insights = llm_asset(task, upstream=raw_reviews)
            defs = dg.Definitions(
                assets=[raw_reviews, insights],
                resources={
                    "llm": LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY")),
                    "ledger": ResponseLedger(),
                    "io_manager": ParquetIOManager(base_dir="data"),
                },
            )
    """
    upstream_key = _key_of(upstream)
    passthrough = tuple(passthrough_columns)
    if partitions_def is None and isinstance(upstream, dg.AssetsDefinition):
        partitions_def = upstream.partitions_def
    if backfill_policy is None and partitions_def is not None:
        backfill_policy = dg.BackfillPolicy.single_run()
    asset_name = name or task.name
    resource_keys = {llm_resource_key} | ({ledger_resource_key} if ledger_resource_key else set())
    definition_metadata = {
        "task_version": task.version,
        "model": task.model or "(LLMResource.model)",
        "system_prompt": dg.MetadataValue.md(f"```\n{task.system_prompt}\n```"),
        "user_prompt": dg.MetadataValue.md(f"```\n{task.user_prompt}\n```"),
        "output_schema": dg.MetadataValue.json(task.json_schema),
        "dagster/column_schema": output_column_schema(task, passthrough),
    }

    quarantine_name = f"{asset_name}_quarantine"
    common: dict[str, Any] = {
        "code_version": task.version,
        "io_manager_key": io_manager_key,
        "group_name": group_name,
        "tags": dict(tags or {}),
        # Subsettable: a selection may take the table without its quarantine, or vice versa.
        "is_required": False,
    }
    outs = {
        asset_name: dg.AssetOut(
            metadata=definition_metadata,
            description=description or f"LLM task '{task.name}': {task.user_prompt[:200]}",
            kinds={"openai", "pandas"},
            **common,
        ),
        quarantine_name: dg.AssetOut(
            metadata={"dagster/column_schema": quarantine_column_schema(task)},
            description=(
                f"Rows of '{asset_name}' that failed after retries and repairs, with the "
                "request, error class and message (dead-letter table)."
            ),
            kinds={"pandas"},
            **common,
        ),
    }
    check = dg.AssetCheckSpec(
        FAILURE_RATE_CHECK,
        asset=asset_name,
        description=f"Fails when more than {max_failure_rate:.0%} of a step's rows failed.",
        blocking=block_downstream_on_failures,
    )

    @dg.multi_asset(
        name=asset_name,
        outs=outs,
        ins={"upstream": dg.AssetIn(key=upstream_key)},
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        required_resource_keys=resource_keys,
        check_specs=[check],
        can_subset=True,
    )
    def _llm_asset(
        context: dg.AssetExecutionContext, config: LLMAssetConfig, upstream: Any
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        partition_keys: list[str | None] = (
            list(context.partition_keys)
            if context.has_partition_key_range or context.has_partition_key
            else [None]
        )
        frames = _frames_by_partition(upstream, partition_keys)
        if prepare is not None:
            frames = {key: prepare(df, key) for key, df in frames.items()}
        step = StepInfo(
            run_id=context.run.run_id,
            asset_key=asset_name,
            upstream=upstream_key.to_user_string(),
        )
        output = run_task(
            task,
            frames,
            llm=getattr(context.resources, llm_resource_key),
            ledger=getattr(context.resources, ledger_resource_key) if ledger_resource_key else None,
            step=step,
            log=context.log,
            max_cost_usd=config.max_cost_usd if config.max_cost_usd is not None else max_cost_usd,
            passthrough_columns=passthrough,
        )
        summary = output.summary
        combined = pd.concat(list(output.tables.values()), ignore_index=True)
        metadata = summary_metadata(task, summary)
        preview_columns = [
            task.id_column or ROW_INDEX_COLUMN,
            *passthrough,
            *task.output_schema.model_fields,
            "llm_status",
            "llm_error",
        ]
        metadata["preview"] = dg.MetadataValue.md(markdown_preview(combined, preview_columns))
        if report is not None:
            metadata.update(report(combined))
        selected = context.selected_asset_keys
        if dg.AssetKey(asset_name) in selected:
            yield dg.MaterializeResult(
                asset_key=asset_name,
                value=_per_partition(output.tables, partition_keys),
                metadata=metadata,
            )
        if dg.AssetKey(quarantine_name) in selected:
            yield dg.MaterializeResult(
                asset_key=quarantine_name,
                value=_per_partition(output.quarantine, partition_keys),
                metadata={"dagster/row_count": summary.failed, "rows": summary.failed},
            )
        if check.key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(
                asset_key=asset_name,
                check_name=FAILURE_RATE_CHECK,
                passed=summary.failure_rate <= max_failure_rate,
                metadata={
                    "failure_rate": round(summary.failure_rate, 4),
                    "threshold": max_failure_rate,
                    "failed": summary.failed,
                    "rows": summary.rows,
                    "failures_by_class": dg.MetadataValue.json(summary.error_classes),
                },
            )

    return _llm_asset


def _per_partition(tables: Mapping[str | None, pd.DataFrame], keys: list[str | None]) -> Any:
    return tables[keys[0]] if len(keys) == 1 else tables


def _frames_by_partition(
    upstream: Any, partition_keys: list[str | None]
) -> dict[str | None, pd.DataFrame]:
    if isinstance(upstream, Mapping):
        return {key: upstream[key] for key in partition_keys}
    if len(partition_keys) != 1:
        raise TypeError(
            f"expected one upstream table per partition for {len(partition_keys)} partitions, "
            f"got a single {type(upstream).__name__}; the IO manager must load a dict"
        )
    return {partition_keys[0]: upstream}
