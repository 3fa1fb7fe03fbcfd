"""The sample an experiment answers, and the tables it makes of the answers.

``draw_sample`` draws the same rows for the same seed over several partitions; the rest turns
each side's step output into one table by row id, puts the sides next to each other, picks the
rows that changed most, and stores the side-by-side table beside the asset's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from llm_assets.experiments.compare import row_distance
from llm_assets.recipes import CodeLocation, assets_def_of
from llm_assets.resources.errors import UserError
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.runner import StepOutput

if TYPE_CHECKING:
    from llm_assets.experiments.run import CandidateResult

__all__ = [
    "EXPERIMENTS_PREFIX",
    "answered_rows",
    "changed_preview",
    "cost_interval",
    "draw_sample",
    "side_by_side",
    "step_table",
    "store_table",
]

#: Experiments' side-by-side tables are stored under this key prefix, one file per experiment.
EXPERIMENTS_PREFIX = "experiments"


def draw_sample(
    frames: Mapping[str | None, pd.DataFrame], n: int | None, fraction: float | None, seed: int
) -> dict[str | None, pd.DataFrame]:
    """The same rows for the same seed, drawn over all partitions; each keeps its partition."""
    sizes = {key: len(frame) for key, frame in frames.items()}
    total = sum(sizes.values())
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise UserError(f"--fraction takes a share in (0, 1], not {fraction}")
        n = max(1, round(total * fraction))
    n = total if n is None else min(n, total)
    if n <= 0:
        raise UserError("the sample is empty: the partitions hold no rows (or --sample 0)")
    positions = pd.Series(range(total)).sample(n=n, random_state=seed).sort_values().tolist()
    chosen: dict[str | None, list[int]] = {key: [] for key in frames}
    offsets, start = {}, 0
    for key, size in sizes.items():
        offsets[key], start = start, start + size
    for position in positions:
        for key in frames:
            if offsets[key] <= position < offsets[key] + sizes[key]:
                chosen[key].append(position - offsets[key])
                break
    return {key: frames[key].iloc[rows] for key, rows in chosen.items() if rows}


def step_table(output: StepOutput, id_column: str) -> pd.DataFrame:
    """A side's rows over all partitions, indexed by row id (as text)."""
    frames = [frame for frame in output.tables.values() if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table.set_index(table[id_column].astype(str)) if len(table) else table


def answered_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a side answered (``llm_status`` ok)."""
    return table[table["llm_status"] == "ok"] if len(table) else table


def cost_interval(table: pd.DataFrame, requests: int) -> tuple[float, float, float]:
    """``requests`` at the sample's mean cost per row: low, mid and high of a 95% interval."""
    costs = [float(v) for v in table.get("llm_cost_usd", pd.Series(dtype=float)).tolist()]
    if not costs:
        return (0.0, 0.0, 0.0)
    mean = statistics.fmean(costs)
    spread = 1.96 * statistics.stdev(costs) / math.sqrt(len(costs)) if len(costs) > 1 else 0.0
    return (max(0.0, requests * (mean - spread)), requests * mean, requests * (mean + spread))


def side_by_side(tables: Mapping[str, pd.DataFrame], fields: list[str]) -> pd.DataFrame:
    """The sides' answers and costs next to each other, one row per sampled row."""
    columns = [*fields, "llm_status", "llm_cost_usd", "llm_input_tokens", "llm_output_tokens"]
    parts = []
    for label, table in tables.items():
        kept = [c for c in columns if c in table.columns]
        parts.append(table[kept].add_prefix(f"{label}."))
    joined = pd.concat(parts, axis=1)
    joined.index.name = "row_id"
    return joined.reset_index()


def changed_preview(
    current: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    fields: list[str],
    results: Sequence[CandidateResult],
    limit: int = 10,
) -> str:
    """A Markdown table of the rows that changed most, current beside each candidate."""
    if not results or not len(current):
        return ""
    first = tables[results[0].label]
    common = [f for f in fields if f in first.columns]
    order = row_distance(answered_rows(current), answered_rows(first), common).head(limit)
    labels = ["current", *(r.label for r in results)]
    header = ["row", "fields changed", *(f"{label}: {f}" for f in common[:3] for label in labels)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row_id, changed in order.items():
        cells = [str(row_id), str(changed)]
        for name in common[:3]:
            for label in labels:
                table = tables[label]
                known = row_id in table.index and name in table.columns
                value = table.at[row_id, name] if known else ""
                cells.append(str(value).replace("|", "/")[:60])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def store_table(
    defs: CodeLocation,
    resources: Mapping[str, Any],
    asset: str,
    experiment_id: str,
    table: pd.DataFrame,
) -> str | None:
    """Stores the side-by-side table with the asset's IO manager, if it is a ParquetIOManager."""
    key = dg.AssetKey.from_user_string(asset)
    manager_key = assets_def_of(defs, key).get_io_manager_key_for_asset_key(key)
    manager = resources.get(manager_key)
    if not isinstance(manager, ParquetIOManager):
        return None
    return manager.write_table(dg.AssetKey([EXPERIMENTS_PREFIX, *key.path]), experiment_id, table)
