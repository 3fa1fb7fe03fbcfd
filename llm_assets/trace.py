"""``trace``: where one generated row came from.

For one output row it gathers the input row, the rendered prompt, the task version, the
model, the raw response, tokens and cost, the run that paid for the call and the run that
materialized the row, and the upstream assets with their materializations, from the Parquet
output, the response ledger and the Dagster instance's event log.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.planning import ROW_INDEX_COLUMN
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.storage import ParquetIOManager


@dataclass
class UpstreamTrace:
    """One upstream asset of the traced asset."""

    asset: str
    partition: str | None
    run_id: str | None
    materialized_at: str | None
    input_row: dict[str, Any] | None = None


@dataclass
class RowTrace:
    """Everything known about one generated row."""

    asset: str
    partition: str | None
    row_id: str
    status: str
    output: dict[str, Any]
    task_version: str
    model: str | None
    request_hash: str | None
    prompt: list[dict[str, Any]] | None
    raw_response: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    paid_by_run_id: str | None
    paid_at: str | None
    materialized_by_run_id: str
    materialized_by_run_status: str | None
    error: str | None
    upstream: list[UpstreamTrace] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


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


def trace_row(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    asset: str,
    row_id: str,
    partition: str | None = None,
) -> RowTrace:
    """Traces one row of an ``llm_asset`` back to its input, prompt, model and runs.

    Args:
        defs: The code location's definitions (resources say where data and ledger live).
        instance: The Dagster instance (SQLite or Postgres) holding the event log.
        asset: The asset key, e.g. ``review_insights``.
        row_id: The row's id (value of the task's ``id_column``).
        partition: The partition key, for a partitioned asset.

    Returns:
        The row's trace.

    Raises:
        KeyError: The asset, partition file or row does not exist.

    Examples:
        .. code-block:: python

            from llm_assets.definitions import defs
            trace = trace_row(defs, dg.DagsterInstance.get(), "review_insights",
                              "2026-11-01-0000", partition="2026-11-01")
            print(trace.prompt, trace.paid_by_run_id)
    """
    key = dg.AssetKey.from_user_string(asset)
    assets_def = defs.resolve_assets_def(key)
    bound = defs.resources or {}
    io_manager = bound.get("io_manager")
    if not isinstance(io_manager, ParquetIOManager):
        raise KeyError("trace reads the output through ParquetIOManager; none is configured")
    path = io_manager.path_for(key, partition)
    if not path.exists():
        raise KeyError(f"no output for asset '{asset}' partition '{partition}' at {path}")
    df = pd.read_parquet(path)
    id_column = _id_column(df, assets_def, key)
    row = _find_row(df, id_column, row_id)
    if row is None:
        raise KeyError(f"no row with {id_column}={row_id!r} in {path}")

    entry = None
    ledger = bound.get("ledger")
    if isinstance(ledger, ResponseLedger) and row.get("llm_request_hash"):
        entry = ledger.get_backend().get(row["llm_request_hash"])
    run = instance.get_run_by_id(row["llm_run_id"])
    output_fields = {k: v for k, v in row.items() if not k.startswith("llm_") and k != id_column}
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
    )
    for parent in sorted(assets_def.dependency_keys, key=lambda k: k.to_user_string()):
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
        parent_path = io_manager.path_for(parent, partition)
        if parent_path.exists():
            upstream.input_row = _find_row(pd.read_parquet(parent_path), id_column, row_id)
        trace.upstream.append(upstream)
    return trace


def format_trace(trace: RowTrace) -> str:
    """Human-readable text of a trace, as ``python -m llm_assets trace`` prints it."""
    lines = [
        f"asset:            {trace.asset}  partition: {trace.partition}  row: {trace.row_id}",
        f"status:           {trace.status}" + (f"  error: {trace.error}" if trace.error else ""),
        f"output:           {json.dumps(trace.output, default=str)}",
        f"task version:     {trace.task_version}",
        f"model:            {trace.model}",
        f"request hash:     {trace.request_hash}",
        f"tokens:           {trace.input_tokens} in / {trace.output_tokens} out",
        f"cost:             ${trace.cost_usd:.6f}",
        f"paid by run:      {trace.paid_by_run_id}  at {trace.paid_at}",
        f"materialized by:  {trace.materialized_by_run_id} ({trace.materialized_by_run_status})",
        "prompt:",
    ]
    for message in trace.prompt or []:
        lines.append(f"  [{message.get('role')}] {message.get('content')}")
    if trace.prompt is None:
        lines.append("  (not in the ledger)")
    lines.append("raw response:")
    lines.append("  " + json.dumps(trace.raw_response, default=str)[:2000])
    lines.append("upstream:")
    for up in trace.upstream:
        lines.append(
            f"  {up.asset} partition={up.partition} run={up.run_id} at={up.materialized_at}"
        )
        if up.input_row is not None:
            lines.append(f"    input row: {json.dumps(up.input_row, default=str)}")
    return "\n".join(lines)
