"""The gate: an ``llm_asset`` step flags rows for review and opens the partition's review.

The step ends once its table is written: the flagged rows wait in the review store, not in a
running process. Each row gets ``review_status`` (``not_required``, ``pending`` or the
decision already recorded for the same content) and ``review_reason``.
"""

from __future__ import annotations

import json
import os
import weakref
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import dagster as dg
import pandas as pd

from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.review import ReviewItem, ReviewStore, item_id_of
from llm_assets.review.policy import ReviewPolicy
from llm_assets.runner import StepOutput
from llm_assets.task import LLMTask

REVIEW_STATUS = "review_status"
REVIEW_REASON = "review_reason"
#: Where the review page is served (``python -m llm_assets review serve``, ``make ui``).
REVIEW_URL_ENV = "LLM_ASSETS_REVIEW_URL"
DEFAULT_REVIEW_URL = "http://127.0.0.1:3100"
#: Longest input value kept with a flagged row (the full row stays in the upstream table).
_MAX_INPUT_CHARS = 4_000


# By the op llm_asset built (Definitions copied by resolve_model_versions keep their op).
_POLICIES: dict[int, tuple[weakref.ref[Any], ReviewPolicy]] = {}


def remember_policy(definition: dg.AssetsDefinition, policy: ReviewPolicy) -> None:
    """Keeps the review policy ``llm_asset`` built ``definition`` with."""
    node = definition.node_def
    _POLICIES[id(node)] = (weakref.ref(node), policy)


def policy_of(definition: dg.AssetsDefinition) -> ReviewPolicy | None:
    """The review policy of an ``llm_asset`` gate, or None."""
    entry = _POLICIES.get(id(definition.node_def))
    return entry[1] if entry is not None and entry[0]() is definition.node_def else None


def review_url(asset_key: str, partition_key: str | None) -> str:
    """The review page of one partition of a gate asset.

    Examples:
        >>> review_url("review_insights", "2026-11-01")
        'http://127.0.0.1:3100/review/review_insights/2026-11-01'
    """
    base = os.environ.get(REVIEW_URL_ENV, DEFAULT_REVIEW_URL).rstrip("/")
    return f"{base}/review/{quote(asset_key, safe='/')}/{quote(partition_key or '-', safe='')}"


def flag_partition(
    task: LLMTask,
    policy: ReviewPolicy,
    store: ReviewStore,
    table: pd.DataFrame,
    upstream: pd.DataFrame | None,
    *,
    asset_key: str,
    partition_key: str | None,
    run_id: str,
    task_version: str,
    now: datetime | None = None,
) -> dict[str, int]:
    """Flags one partition's rows, adds the review columns and opens its review round.

    Args:
        task: The gate's task.
        policy: Which rows need a person.
        store: The review store.
        table: The partition's output table; ``review_status`` and ``review_reason`` are
            added in place.
        upstream: The partition's input rows in the same order (their prompt columns are kept
            with each flagged row for the reviewer), or None.
        asset_key: The gate asset.
        partition_key: The partition.
        run_id: The gate run.
        task_version: The task version the step answered with.
        now: When (the wall clock by default).

    Returns:
        How many rows have each review status.
    """
    records = json.loads(table.to_json(orient="records", date_format="iso")) if len(table) else []
    reasons = [policy.reason(row, row.get("llm_request_hash")) for row in records]
    flagged = [
        i for i, reason in enumerate(reasons) if reason and records[i].get("llm_request_hash")
    ]
    keys = [(records[i]["llm_request_hash"], records[i]["llm_task_version"]) for i in flagged]
    decided = store.latest_decisions(keys)
    statuses = ["not_required"] * len(records)
    id_column = task.id_column or ROW_INDEX_COLUMN
    inputs = _inputs(task, upstream, len(records))
    items = []
    for i, key in zip(flagged, keys, strict=True):
        record = decided.get(key)
        statuses[i] = record.decision if record is not None else "pending"
        row_id = str(records[i].get(id_column, i))
        items.append(
            ReviewItem(
                item_id_of(asset_key, partition_key, key[0], key[1]),
                asset_key, partition_key, row_id, key[0], key[1], str(reasons[i]),
                {"inputs": inputs[i], "output": records[i]}, run_id,
                now or policy.clock(),
            )
        )  # fmt: skip
    store.open_round(
        asset_key, partition_key, run_id, task_version, items, now=now or policy.clock()
    )
    table[REVIEW_STATUS] = pd.Series(statuses, index=table.index, dtype="string")
    kept = set(flagged)
    table[REVIEW_REASON] = pd.Series(
        [reasons[i] if i in kept else None for i in range(len(records))],
        index=table.index,
        dtype="string",
    )
    return dict(Counter(statuses))


def open_gate(
    policy: ReviewPolicy,
    task: LLMTask,
    ledger: ResponseLedger,
    output: StepOutput,
    frames: Mapping[str | None, pd.DataFrame],
    *,
    asset_key: str,
    run_id: str,
) -> dict[str | None, dict[str, Any]]:
    """Flags the rows of every partition of a step and returns each partition's metadata."""
    store = ledger.review_store()
    metadata = {}
    for partition, table in output.tables.items():
        counts = flag_partition(
            task, policy, store, table, frames.get(partition),
            asset_key=asset_key, partition_key=partition, run_id=run_id,
            task_version=output.task_version,
        )  # fmt: skip
        metadata[partition] = review_metadata(counts, asset_key, partition)
    return metadata


def review_metadata(
    counts: Mapping[str, int], asset_key: str, partition_key: str | None
) -> dict[str, Any]:
    """What a gate partition shows in the UI: rows waiting, the page, counts per status."""
    pending = counts.get("pending", 0)
    return {
        "review_pending": pending,
        "review_url": dg.MetadataValue.url(review_url(asset_key, partition_key)),
        "review_counts": dg.MetadataValue.json(dict(sorted(counts.items()))),
    }


def _inputs(task: LLMTask, upstream: pd.DataFrame | None, rows: int) -> list[dict[str, Any]]:
    """The prompt's columns of each input row (long values cut), or empty dicts."""
    if upstream is None or len(upstream) != rows:
        return [{} for _ in range(rows)]
    columns = [c for c in task.required_columns if c in upstream.columns]
    picked = json.loads(upstream[columns].to_json(orient="records", date_format="iso"))
    for row in picked:
        for name, value in row.items():
            if isinstance(value, str) and len(value) > _MAX_INPUT_CHARS:
                row[name] = value[:_MAX_INPUT_CHARS] + " [...]"
    return list(picked)
