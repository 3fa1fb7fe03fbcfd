"""``llm_spend_asset``: an asset that shows what the LLM assets cost, from the ledger."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dagster as dg

from llm_assets.resources.ledger.resource import ResponseLedger
from llm_assets.resources.ledger.rollup import spend_rollup
from llm_assets.resources.llm import LLMResource
from llm_assets.spend.figures import materialized, spend_lines
from llm_assets.spend.view import spend_frame, spend_metadata
from llm_assets.versions import is_llm_table

_DEFAULT_DISCOUNT = float(LLMResource.model_fields["batch_discount"].default)


def llm_spend_asset(
    *,
    name: str = "llm_spend",
    assets: Sequence[dg.AssetsDefinition | dg.AssetKey | str] = (),
    lookback_days: int | None = None,
    batch_discount: float = _DEFAULT_DISCOUNT,
    ledger_resource_key: str = "ledger",
    io_manager_key: str = "io_manager",
    group_name: str | None = None,
    automation_condition: dg.AutomationCondition | None = None,
) -> dg.AssetsDefinition:
    """An asset whose materialization shows LLM spend by day, asset, partition and model.

    Each materialization reads the ledger (one grouped query) and the ``llm_asset``
    materializations on the instance, and shows: ``spend``, the totals as a sentence (first);
    the totals as numbers Dagster plots across materializations (``spend_usd``, ``tokens``,
    ``requests``, ``saved_by_ledger_usd``, ``saved_by_provider_cache_usd``,
    ``saved_by_batch_usd``, ``failure_rate``); a table by UTC day, asset, partition and model
    (``spend_table``) and Markdown bar charts by day, partition, model and asset (``chart``).
    The same table is the asset's value, stored by its IO manager. Its totals are the ledger's
    sums.

    Args:
        name: Asset name.
        assets: ``llm_asset`` definitions (or keys) drawn upstream of it in the graph. Spend is
            shown for every asset in the ledger and every ``llm_asset`` of the code location
            whether listed or not.
        lookback_days: Only the last N days (UTC); ``None`` for the whole ledger.
        batch_discount: Share of the online price the Batch API charged
            (``LLMResource.batch_discount``), to tell what batch pricing saved.
        ledger_resource_key: Resource key of the ``ResponseLedger``.
        io_manager_key: IO manager storing the table (a pandas DataFrame).
        group_name: Dagster asset group.
        automation_condition: When the automation daemon refreshes it, e.g.
            ``dg.AutomationCondition.cron_tick_passed("0 * * * *")``.

    Returns:
        The asset definition.

    Examples:
        >>> spend = llm_spend_asset(lookback_days=30)
        >>> spend.key.to_user_string()
        'llm_spend'

        .. code-block:: python

            defs = dg.Definitions(
                assets=[raw_reviews, insights, llm_spend_asset(assets=[insights])],
                resources={
                    "llm": LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY")),
                    "ledger": ResponseLedger(),
                    "io_manager": ParquetIOManager(base_dir="data"),
                },
            )
    """
    deps = [_table_key(asset) for asset in assets]

    @dg.asset(
        name=name,
        deps=deps,
        required_resource_keys={ledger_resource_key},
        io_manager_key=io_manager_key,
        group_name=group_name,
        automation_condition=automation_condition,
        kinds={"pandas"},
        description=(
            "LLM spend by UTC day, asset, partition and model, from the response ledger: money, "
            "tokens, requests, what the ledger, the provider's prompt cache and batch pricing "
            "saved, and the share of rows that failed. Totals are plotted across "
            "materializations."
        ),
    )
    def _spend(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        ledger: ResponseLedger = getattr(context.resources, ledger_resource_key)
        since = (
            datetime.now(UTC) - timedelta(days=lookback_days) if lookback_days is not None else None
        )
        rows = spend_rollup(ledger.get_backend(), since=since)
        keys = set(deps)
        keys |= {dg.AssetKey.from_user_string(row.asset_key) for row in rows}
        keys |= {key for key in _defined_keys(context) if is_llm_table(key)}
        ordered = sorted(keys, key=lambda key: key.to_user_string())
        figures = materialized(context.instance, ordered, since)
        lines = spend_lines(rows, figures, batch_discount=batch_discount)
        frame = spend_frame(lines)
        return dg.MaterializeResult(value=frame, metadata=spend_metadata(lines))

    return _spend


def _defined_keys(context: dg.AssetExecutionContext) -> set[dg.AssetKey]:
    """The asset keys of the code location, or of the run's job where no location is known."""
    try:
        graph = context.repository_def.asset_graph
    except Exception:  # a CheckError: dg.materialize sets no repository on the step context
        graph = context.job_def.asset_layer.asset_graph
    return set(graph.get_all_asset_keys())


def _table_key(asset: dg.AssetsDefinition | dg.AssetKey | str) -> dg.AssetKey:
    if isinstance(asset, dg.AssetKey):
        return asset
    if isinstance(asset, str):
        return dg.AssetKey.from_user_string(asset)
    tables = [key for key in asset.keys if is_llm_table(key)]
    return tables[0] if len(tables) == 1 else asset.key
