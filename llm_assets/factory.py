"""``llm_asset``: turns an ``LLMTask`` and an upstream asset into a partitioned Dagster asset."""

import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Unpack

import dagster as dg
import pandas as pd
from pydantic import Field

from llm_assets.batching import batch_mode
from llm_assets.describe import (
    output_column_schema,
    preview_report,
    quarantine_column_schema,
    task_description,
)
from llm_assets.endpoints import DEFAULT_KIND
from llm_assets.options import AssetOptions, ResolvedOptions
from llm_assets.recipes import remember_recipe
from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.resources.errors import UserError
from llm_assets.results import FAILURE_RATE_CHECK, AssetNames, Event, Report, step_events
from llm_assets.review.gate import open_gate, remember_policy
from llm_assets.review.policy import ReviewPolicy
from llm_assets.runner import StepInfo, run_task
from llm_assets.task import LLMTask
from llm_assets.versions import register_llm_asset

Mode = Literal["online", "batch"]


class LLMAssetConfig(dg.Config):
    """Run config of an ``llm_asset`` (set it in the launchpad or with ``run_config``)."""

    max_cost_usd: float | None = Field(
        default=None,
        description="Budget for this run's new spend on this asset; overrides the asset's.",
    )
    mode: str | None = Field(
        default=None,
        description="'online' (send now) or 'batch' (submit to the Batch API at its discount "
        "and let the batch sensor materialize the result); overrides the asset's mode.",
    )


def upstream_key_of(upstream: dg.AssetsDefinition | dg.AssetKey | str) -> dg.AssetKey:
    """The asset key of an upstream given as an asset, a key or a ``/``-separated string.

    Examples:
        >>> upstream_key_of("shop/reviews").path
        ['shop', 'reviews']
    """
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


def llm_asset(
    task: LLMTask,
    *,
    upstream: dg.AssetsDefinition | dg.AssetKey | str,
    name: str | None = None,
    report: Report | None = None,
    max_failure_rate: float = 0.05,
    block_downstream_on_failures: bool = False,
    automation_condition: dg.AutomationCondition | None = None,
    mode: Mode = "online",
    batch_max_resubmits: int = 1,
    review: ReviewPolicy | None = None,
    **options: Unpack[AssetOptions],
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
        report: Extra materialization metadata computed from the output table.
        max_failure_rate: The ``failure_rate`` asset check fails above this share of failed
            rows.
        block_downstream_on_failures: Make that check blocking, so downstream assets do not
            run on a partition that failed it.
        mode: ``"online"`` sends requests now; ``"batch"`` submits what the ledger lacks to
            the OpenAI Batch API and ends, and ``llm_assets.sensors.batch_sensor`` requests
            the materialization once the batch finished (needs a ledger). Run config
            ``mode`` overrides it per run.
        batch_max_resubmits: In batch mode, how many times a request whose batch line failed
            is submitted again before its row fails with ``batch_failed``.
        review: A review gate: the rows the policy flags wait for a person's decision
            (``review_status`` column; decisions kept in the ledger's database), and
            ``llm_assets.reviewed_asset`` builds the asset of the rows that may flow on.
        automation_condition: When the automation daemon materializes the asset, e.g.
            ``llm_assets.rematerialize_on_new_version()`` to redo recent partitions after a
            prompt, schema or model change.
        **options: What ``llm_asset`` and ``planned_asset`` share (``AssetOptions``):
            ``partitions_def``, ``prepare``, ``passthrough_columns``, ``max_cost_usd``,
            ``group_name``, ``description``, ``llm_resource_key``, ``ledger_resource_key``,
            ``io_manager_key``, ``backfill_policy``, ``tags``.

    Returns:
        The asset definition.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import LLMResource, LLMTask, ParquetIOManager, ResponseLedger, llm_asset

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
    upstream_key = upstream_key_of(upstream)
    opts = ResolvedOptions.of(options, upstream)
    passthrough = opts.passthrough_columns
    asset_name = name or task.name
    definition_metadata = {
        "task_version": task.version,
        "model": task.model or "(LLMResource.model)",
        "system_prompt": dg.MetadataValue.md(f"```\n{task.system_prompt}\n```"),
        "user_prompt": dg.MetadataValue.md(f"```\n{task.user_prompt}\n```"),
        "output_schema": dg.MetadataValue.json(task.json_schema),
        "dagster/column_schema": output_column_schema(task, passthrough, review=review),
    }

    quarantine_name = f"{asset_name}_quarantine"
    common: dict[str, Any] = {
        "code_version": task.version,
        "io_manager_key": opts.io_manager_key,
        "group_name": opts.group_name,
        "tags": opts.tags,
        # Subsettable: a selection may take the table without its quarantine, or vice versa.
        "is_required": False,
    }
    outs = {
        asset_name: dg.AssetOut(
            metadata=definition_metadata,
            automation_condition=automation_condition,
            description=task_description(
                task, upstream=upstream_key.to_user_string(), intro=opts.description
            ),
            # The endpoint badge; resolve_model_versions names the endpoint actually configured.
            kinds={DEFAULT_KIND, "pandas"},
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
    with warnings.catch_warnings():
        # Chosen knowingly, so the user is not told about them on every load: a partitioned
        # check (Dagster 1.13 preview) judges each partition's failure rate on its own, and a
        # single-run backfill policy (beta) sends a range's prompts from one shared pool.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        check = dg.AssetCheckSpec(
            FAILURE_RATE_CHECK,
            asset=asset_name,
            description=(
                f"Fails when more than {max_failure_rate:.0%} of a partition's rows failed."
            ),
            blocking=block_downstream_on_failures,
            partitions_def=opts.partitions_def,
        )
        decorate = dg.multi_asset(
            name=asset_name,
            outs=outs,
            ins={"upstream": dg.AssetIn(key=upstream_key)},
            # The quarantine holds the table's failed rows: in the lineage it follows the table.
            internal_asset_deps={
                asset_name: {upstream_key},
                quarantine_name: {dg.AssetKey(asset_name)},
            },
            partitions_def=opts.partitions_def,
            backfill_policy=opts.backfill_policy,
            required_resource_keys=opts.resource_keys,
            check_specs=[check],
            can_subset=True,
        )

    @decorate
    def _llm_asset(
        context: dg.AssetExecutionContext, config: LLMAssetConfig, upstream: Any
    ) -> Iterator[Event]:
        partition_keys: list[str | None] = (
            list(context.partition_keys)
            if context.has_partition_key_range or context.has_partition_key
            else [None]
        )
        frames = frames_by_partition(upstream, partition_keys)
        if opts.prepare is not None:
            frames = {key: opts.prepare(df, key) for key, df in frames.items()}
        llm = getattr(context.resources, opts.llm_resource_key)
        ledger_key = opts.ledger_resource_key
        ledger = getattr(context.resources, ledger_key) if ledger_key else None
        _warn_if_version_misses_model(context, asset_name, task, llm.model)
        if review is not None and ledger is None:
            raise UserError(
                f"asset '{asset_name}' has a review gate, which keeps its decisions in the "
                f"ledger's database: give it a ResponseLedger (resource '{ledger_key or 'ledger'}'"
                ", ledger_resource_key)"
            )
        with batch_mode(
            _check_mode(config.mode or mode),
            llm,
            ledger,
            asset_name,
            context.run.run_id,
            batch_max_resubmits,
        ) as batch:
            output = run_task(
                task,
                frames,
                llm=llm,
                ledger=ledger,
                step=StepInfo(
                    run_id=context.run.run_id,
                    asset_key=asset_name,
                    upstream=upstream_key.to_user_string(),
                ),
                log=context.log,
                max_cost_usd=(
                    config.max_cost_usd if config.max_cost_usd is not None else opts.max_cost_usd
                ),
                passthrough_columns=passthrough,
                batch=batch,
            )
        preview_columns = (
            task.id_column or ROW_INDEX_COLUMN,
            *passthrough,
            *task.output_schema.model_fields,
            "llm_status",
            "llm_error",
        )
        names = AssetNames(
            table=dg.AssetKey(asset_name),
            quarantine=dg.AssetKey(quarantine_name),
            preview_columns=preview_columns,
            default_model=task.model or llm.model,
            max_failure_rate=max_failure_rate,
            io_manager_key=opts.io_manager_key,
        )
        gate = None
        if review is not None and ledger is not None and not output.waiting:
            gate = open_gate(
                review, task, ledger, output, frames,
                asset_key=asset_name, run_id=context.run.run_id,
            )  # fmt: skip
        yield from step_events(
            context,
            names,
            output,
            preview_report(report, output, asset_name, preview_columns),
            extra=gate,
        )

    remember_recipe(_llm_asset, dg.AssetKey(asset_name), task, upstream_key, opts)
    if review is not None:
        remember_policy(_llm_asset, review)
    register_llm_asset(
        dg.AssetKey(asset_name),
        task,
        opts.llm_resource_key,
        upstream=upstream_key.to_user_string(),
        intro=opts.description,
        definition=_llm_asset,
    )
    register_llm_asset(
        dg.AssetKey(quarantine_name),
        task,
        opts.llm_resource_key,
        is_table=False,
        definition=_llm_asset,
    )
    return _llm_asset


def _check_mode(mode: str) -> str:
    if mode not in ("online", "batch"):
        raise UserError(f"mode must be 'online' or 'batch', not {mode!r} (run config `mode`)")
    return mode


def _warn_if_version_misses_model(
    context: dg.AssetExecutionContext, asset_name: str, task: LLMTask, default_model: str
) -> None:
    declared = context.assets_def.specs_by_key[dg.AssetKey(asset_name)].code_version
    if task.model is None and declared != task.version_for(default_model):
        context.log.warning(
            f"asset '{asset_name}' is answered by LLMResource.model '{default_model}', but its "
            "code_version does not include that model, so changing it will not mark the asset "
            "stale. Build Definitions with llm_assets.resolve_model_versions(defs), or set "
            "`model` on the task."
        )


def frames_by_partition(
    upstream: Any, partition_keys: list[str | None]
) -> dict[str | None, pd.DataFrame]:
    """The upstream table of each partition a step runs, as the IO manager loaded them.

    Examples:
        >>> frames_by_partition(pd.DataFrame({"a": [1]}), ["2026-11-01"])["2026-11-01"].shape
        (1, 1)
    """
    if isinstance(upstream, Mapping):
        return {key: upstream[key] for key in partition_keys}
    if len(partition_keys) != 1:
        raise TypeError(
            f"expected one upstream table per partition for {len(partition_keys)} partitions, "
            f"got a single {type(upstream).__name__}; the IO manager must load a dict"
        )
    return {partition_keys[0]: upstream}
