"""``trace``: where one generated row came from.

For one output row it gathers the input row, the rendered prompt, the task version, the
model, the raw response, tokens and cost, the run that paid for the call and the run that
materialized the row, and the upstream assets with their materializations, from the Parquet
output, the response ledger and the Dagster instance's event log. What a trace holds and
how it reads are in ``row_trace``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.review.gate import REVIEW_STATUS
from llm_assets.review.history import decision_entry
from llm_assets.review.reviewed import GATE_METADATA
from llm_assets.row_trace import RowTrace, UpstreamTrace, format_trace

__all__ = ["RowTrace", "UpstreamTrace", "format_trace", "trace_row"]

# Columns of planner assets (llm_assets.planner.rows); named here so trace needs no planner import.
_TOOL_CALLS = "tool_calls"
_PLAN_HASH = "planner_request_hash"
_PLAN_VERSION = "planner_task_version"


def _json_safe(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value


def _find_row(df: pd.DataFrame, id_column: str, row_id: str) -> dict[str, Any] | None:
    if id_column not in df.columns:
        return None
    match = df[df[id_column].astype(str) == str(row_id)]
    if match.empty:
        return None
    return {k: _json_safe(v) for k, v in match.iloc[0].to_dict().items()}


def _id_column(df: pd.DataFrame, asset: dg.AssetsDefinition, key: dg.AssetKey) -> str:
    schema = asset.metadata_by_key.get(key, {}).get("dagster/column_schema")
    if isinstance(schema, dg.TableSchema) and schema.columns:
        return schema.columns[0].name
    return ROW_INDEX_COLUMN if ROW_INDEX_COLUMN in df.columns else str(df.columns[0])


def _listing(values: list[str], limit: int = 8) -> str:
    if not values:
        return "none"
    shown = ", ".join(values[:limit])
    return shown if len(values) <= limit else f"{shown}, ... ({len(values)} in all)"


def _llm_asset(defs: dg.Definitions, asset: str) -> tuple[dg.AssetKey, dg.AssetsDefinition]:
    """The key and definition of ``asset``, which must be an ``llm_asset`` of ``defs``."""
    key = dg.AssetKey.from_user_string(asset)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    # llm_asset marks its table with the task version; quarantine and plain assets lack it.
    llm_assets = sorted(
        k.to_user_string() for k, s in specs.items() if "task_version" in s.metadata
    )
    gate = specs[key].metadata.get(GATE_METADATA) if key in specs else None
    if gate is not None:  # a reviewed asset: its rows are the gate's, decisions applied
        key = dg.AssetKey.from_user_string(str(gate))
    if key not in specs:
        raise KeyError(
            f"no asset '{asset}' in this code location; its LLM assets: {_listing(llm_assets)}"
        )
    if "task_version" not in specs[key].metadata:
        raise KeyError(
            f"asset '{asset}' is not an llm_asset, so its rows carry no provenance; "
            f"LLM assets here: {_listing(llm_assets)}"
        )
    return key, defs.resolve_assets_def(key)


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    partitions = sorted(instance.get_materialized_partitions(key), reverse=True)
    return f"partitions materialized in this instance (newest first): {_listing(partitions)}"


def _partition_key(
    instance: dg.DagsterInstance,
    assets_def: dg.AssetsDefinition,
    key: dg.AssetKey,
    partition: str | None,
) -> str | dg.MultiPartitionKey | None:
    """Checks ``partition`` against the asset's partitioning and parses multi-partition keys."""
    partitions_def = assets_def.partitions_def
    asset = key.to_user_string()
    if partitions_def is None:
        if partition is not None:
            raise KeyError(f"asset '{asset}' is not partitioned; leave out the partition")
        return None
    if partition is None:
        raise KeyError(
            f"asset '{asset}' is partitioned: give a partition; {_materialized(instance, key)}"
        )
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        try:
            return partitions_def.get_partition_key_from_str(partition)
        except Exception as exc:
            raise KeyError(
                f"'{partition}' is not a key of asset '{asset}' "
                f"(dimensions {'|'.join(partitions_def.partition_dimension_names)}): {exc}"
            ) from None
    return partition


def _ledger(defs: dg.Definitions, assets_def: dg.AssetsDefinition) -> ResponseLedger | None:
    """The ``ResponseLedger`` among the asset's resources, whatever its resource key."""
    bound = defs.resources or {}
    for name in sorted(assets_def.required_resource_keys):
        if isinstance(bound.get(name), ResponseLedger):
            return bound[name]
    return None


def trace_row(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset: str,
    row_id: str,
    partition: str | None = None,
) -> RowTrace:
    """Traces one row of an ``llm_asset`` back to its input, prompt, model and runs.

    The output table is read through the asset's ``ParquetIOManager`` (whatever its resource
    key) and the prompt and raw response come from the ``ResponseLedger`` among the asset's
    resources, so any code location built with ``llm_asset`` can be traced.

    Args:
        defs: The code location's definitions (resources say where data and ledger live).
        instance: The Dagster instance (SQLite or Postgres) holding the event log.
        asset: The asset key, e.g. ``review_insights`` (``a/b`` for a key with a prefix).
        row_id: The row's id (value of the task's ``id_column``).
        partition: The partition key, for a partitioned asset (``a|b`` for multi-partitions).

    Returns:
        The row's trace.

    Raises:
        KeyError: The asset is unknown or not an ``llm_asset``, the partition is missing or
            was never written, or no row has that id. The message lists what does exist.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import format_trace, trace_row
            from reviews_example.definitions import defs  # the code location to read

            with dg.DagsterInstance.get() as instance:  # the instance in $DAGSTER_HOME
                trace = trace_row(defs, instance, "review_insights", "2026-11-01-0000",
                                  partition="2026-11-01")
            print(format_trace(trace))
    """
    key, assets_def = _llm_asset(defs, asset)
    partition_key = _partition_key(instance, assets_def, key, partition)
    io_manager_key = assets_def.get_io_manager_key_for_asset_key(key)
    io_manager = (defs.resources or {}).get(io_manager_key)
    if not isinstance(io_manager, ParquetIOManager):
        raise KeyError(
            f"trace reads asset '{asset}' through a ParquetIOManager, but its IO manager "
            f"'{io_manager_key}' is {type(io_manager).__name__}"
        )
    uri = io_manager.uri_for(key, partition_key)
    df = io_manager.find_table(key, partition_key)
    if df is None:
        known = f"; {_materialized(instance, key)}" if partition is not None else ""
        raise KeyError(
            f"no output for asset '{asset}' partition '{partition}' at {uri} (is the IO "
            f"manager's base_dir the one the run wrote to?){known}"
        )
    id_column = _id_column(df, assets_def, key)
    row = _find_row(df, id_column, row_id)
    if row is None:
        ids = df[id_column].astype(str).tolist() if id_column in df.columns else []
        raise KeyError(
            f"no row with {id_column}={row_id!r} in {uri}; {id_column} values: {_listing(ids)}"
        )

    entry = None
    ledger = _ledger(defs, assets_def)
    if ledger is not None and row.get("llm_request_hash"):
        entry = ledger.get_backend().get(row["llm_request_hash"])
    run = instance.get_run_by_id(row["llm_run_id"])
    output_fields = {
        k: v
        for k, v in row.items()
        if not k.startswith("llm_") and k not in (id_column, _TOOL_CALLS, _PLAN_HASH, _PLAN_VERSION)
    }
    trace = RowTrace(
        asset=asset,
        partition=partition,
        row_id=str(row_id),
        status=row["llm_status"],
        output=output_fields,
        task_version=row["llm_task_version"],
        model=row.get("llm_model"),
        request_hash=row.get("llm_request_hash"),
        prompt=entry.request.get("messages") if entry else None,
        raw_response=entry.response if entry else None,
        input_tokens=int(row.get("llm_input_tokens") or 0),
        output_tokens=int(row.get("llm_output_tokens") or 0),
        cost_usd=float(row.get("llm_cost_usd") or 0.0),
        paid_by_run_id=entry.run_id if entry else row.get("llm_paid_by_run_id"),
        paid_at=entry.created_at.isoformat() if entry else None,
        materialized_by_run_id=row["llm_run_id"],
        materialized_by_run_status=run.status.value if run else None,
        error=row.get("llm_error"),
        tool_calls=json.loads(row.get(_TOOL_CALLS) or "[]"),
        plan_request_hash=row.get(_PLAN_HASH),
    )
    if row.get(REVIEW_STATUS) not in (None, "not_required") and ledger is not None:
        trace.review_reason = row.get("review_reason") or ""
        store = ledger.review_store()
        answer = {k: v for k, v in output_fields.items() if not k.startswith("review_")}
        trace.review = [
            decision_entry(d, answer)
            for d in store.history(row["llm_request_hash"], row["llm_task_version"])
        ]
    # The asset's own inputs: not the keys its siblings in the same definition read (the
    # quarantine reads the asset's own table).
    parents = assets_def.asset_deps.get(key, set()) - set(assets_def.keys)
    for parent in sorted(parents, key=lambda k: k.to_user_string()):
        event = instance.get_latest_materialization_event(parent)
        if partition is not None:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=parent, asset_partitions=[partition]), limit=1
            ).records
            event = records[0].event_log_entry if records else None
        upstream = UpstreamTrace(
            asset=parent.to_user_string(),
            partition=partition,
            run_id=event.run_id if event else None,
            materialized_at=datetime.fromtimestamp(event.timestamp).isoformat() if event else None,
        )
        parent_table = io_manager.find_table(parent, partition_key)
        if parent_table is not None:
            upstream.input_row = _find_row(parent_table, id_column, row_id)
        trace.upstream.append(upstream)
    return trace
