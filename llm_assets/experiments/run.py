"""Run an experiment: the current task and its candidates on one reproducible sample.

Both sides go through the asset's own ``LLMResource``, rate limiter, claims and ledger, with
the asset's name on every ledger entry: the current side's answers are the ledger's when the
partitions were materialized (free), and what a candidate paid for is what the asset will ask
once the candidate is adopted, so adopting pays only for the rows the sample did not hold.
"""

from __future__ import annotations

import logging
import math
import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.experiments.candidate import candidate_task
from llm_assets.experiments.compare import FieldAgreement, field_agreement, row_distance
from llm_assets.forecast import Forecast, forecast_partitions
from llm_assets.recipes import (
    CodeLocation,
    assets_def_of,
    check_partitions,
    find_recipe,
    resources_of,
    upstream_frames,
)
from llm_assets.rendering import ROW_INDEX_COLUMN, check_columns
from llm_assets.resources.errors import BudgetExceededError, UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.runner import StepInfo, StepOutput, run_task
from llm_assets.task import LLMTask

__all__ = ["CandidateResult", "Experiment", "Side", "run_experiment"]

#: Experiments' side-by-side tables are stored under this key prefix, one file per experiment.
EXPERIMENTS_PREFIX = "experiments"


@dataclass(frozen=True)
class Side:
    """What one side (the current task or a candidate) did on the sample.

    Attributes:
        rows: Sample rows.
        failed: Rows that failed.
        requests_sent: Requests paid now (the ledger answered the rest).
        cost_usd: What the side's answers cost when they were paid (paid now or before).
        tokens: Input plus output tokens of those answers.
        latency_s: Mean seconds per paid request.
        task_version: The version of what the side sends.
    """

    rows: int
    failed: int
    requests_sent: int
    cost_usd: float
    tokens: int
    latency_s: float
    task_version: str

    @property
    def failure_rate(self) -> float:
        """Failed rows over sample rows."""
        return self.failed / self.rows if self.rows else 0.0

    @property
    def cost_per_row(self) -> float:
        """Mean cost of a sample row's answer."""
        return self.cost_usd / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class CandidateResult:
    """One candidate against the current task.

    Attributes:
        label: The candidate's name (``B``, ``C``, ...).
        overrides: What it changes.
        side: What it did on the sample.
        fields: Per-field agreement with the current answers.
        forecast: Re-materializing the chosen partitions with it (ledger hits, requests, tokens).
        forecast_usd: Dollars of that forecast at the sample's mean cost per request, with a
            95% interval from the sample (low, mid, high).
    """

    label: str
    overrides: dict[str, Any]
    side: Side
    fields: list[FieldAgreement]
    forecast: Forecast
    forecast_usd: tuple[float, float, float]

    @property
    def agreement(self) -> float:
        """Mean agreement over the fields (1.0 when every compared field agreed)."""
        shares = [f.agreement for f in self.fields]
        return sum(shares) / len(shares) if shares else 0.0


@dataclass
class Experiment:
    """An experiment's outcome; ``metadata()`` and ``describe()`` show it."""

    experiment_id: str
    asset: str
    partitions: list[str | None]
    seed: int
    current: Side
    candidates: list[CandidateResult]
    table: pd.DataFrame
    uri: str | None = None
    changed_preview: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_experiment(
    defs: CodeLocation,
    asset: str,
    partitions: Sequence[str | None] | None,
    candidates: Mapping[str, Mapping[str, Any]],
    *,
    sample: int | None = 50,
    fraction: float | None = None,
    seed: int = 0,
    forecast_for: Sequence[str | None] | None = None,
    max_cost_usd: float | None = None,
    run_id: str | None = None,
    resources: Mapping[str, Any] | None = None,
    log: logging.Logger | Any | None = None,
) -> Experiment:
    """Runs the asset's task and each candidate on a reproducible sample, and compares them.

    Args:
        defs: The code location's definitions (its resources, unless ``llm``/``ledger``).
        asset: An ``llm_asset`` table, e.g. ``review_insights``.
        partitions: Partitions the sample is drawn from (``None`` when unpartitioned).
        candidates: Candidate name to overrides (see ``candidate_task``); one or two.
        sample: Rows in the sample (drawn over all ``partitions`` together).
        fraction: Or a share of the rows instead of ``sample``.
        seed: Seed of the draw: the same seed draws the same rows.
        forecast_for: Partitions whose re-materialization with each candidate is forecast
            (default: ``partitions``).
        max_cost_usd: Budget of new spend for the whole experiment.
        run_id: Recorded as the paying run (a Dagster run's id inside the job).
        resources: Initialized resources by key (a run's), instead of those bound in ``defs``.
        log: Where progress lines go.

    Returns:
        The experiment; its side-by-side table is also stored as Parquet beside the asset's.

    Raises:
        UserError: A bad override, a prompt column the upstream lacks, an unknown partition,
            before any request is sent.
        BudgetExceededError: The experiment would cost more than ``max_cost_usd``.

    Examples:
        .. code-block:: python

            from llm_assets.experiments import run_experiment
            from reviews_example.definitions import defs

            outcome = run_experiment(defs, "review_insights", ["2026-11-01"],
                                     {"B": {"model": "sim-large"}}, sample=50, seed=7)
            print(outcome.candidates[0].agreement)
    """
    if not candidates:
        raise UserError("an experiment needs at least one candidate (--set name=value)")
    key = dg.AssetKey.from_user_string(asset)
    assets_def, recipe = find_recipe(defs, key, asset)
    keys = check_partitions(assets_def, asset, partitions)
    resources = dict(resources) if resources is not None else resources_of(defs)
    llm = resources.get(recipe.options.llm_resource_key)
    if not isinstance(llm, LLMResource):
        raise UserError(
            f"asset '{asset}' needs an LLMResource as '{recipe.options.llm_resource_key}'"
        )
    ledger = resources.get(recipe.options.ledger_resource_key or "")
    tasks = {label: candidate_task(recipe.task, o, label=label) for label, o in candidates.items()}
    frames = _sample(upstream_frames(defs, recipe, keys, asset, resources), sample, fraction, seed)
    passthrough = recipe.options.passthrough_columns
    for label, task in (("current", recipe.task), *tasks.items()):
        for frame in frames.values():
            try:
                check_columns(task, frame, asset, recipe.upstream.to_user_string(), passthrough)
            except UserError as exc:
                raise UserError(f"candidate {label}: {exc}") from None
    experiment_id = run_id or f"experiment-{uuid.uuid4().hex[:12]}"
    step = StepInfo(
        run_id=experiment_id, asset_key=asset, upstream=recipe.upstream.to_user_string()
    )
    log = log or logging.getLogger("llm_assets.experiments")
    budget = _Budget(max_cost_usd)

    def answer(task: LLMTask) -> StepOutput:
        output = run_task(
            task,
            frames,
            llm=llm,
            ledger=ledger if isinstance(ledger, ResponseLedger) else None,
            step=step,
            log=log,
            max_cost_usd=budget.left(),
            passthrough_columns=passthrough,
        )
        budget.spend(output.summary.cost_usd)
        return output

    id_column = recipe.task.id_column or ROW_INDEX_COLUMN
    current_out = answer(recipe.task)
    current = _table(current_out, id_column)
    results: list[CandidateResult] = []
    tables = {"current": current}
    for label, task in tasks.items():
        out = answer(task)
        table = _table(out, id_column)
        tables[label] = table
        forecast = forecast_partitions(
            defs, asset, list(forecast_for or keys), task=task, resources=resources
        )
        side = _side(table, out)
        results.append(
            CandidateResult(
                label=label,
                overrides=dict(candidates[label]),
                side=side,
                fields=field_agreement(_ok(current), _ok(table), recipe.task.output_schema),
                forecast=forecast,
                forecast_usd=_interval(table, forecast.requests),
            )
        )
    fields = [name for name in recipe.task.output_schema.model_fields]
    joined = _side_by_side(tables, fields)
    experiment = Experiment(
        experiment_id=experiment_id,
        asset=asset,
        partitions=keys,
        seed=seed,
        current=_side(current, current_out),
        candidates=results,
        table=joined,
    )
    experiment.changed_preview = _changed(current, tables, fields, results)
    experiment.uri = _store(defs, resources, asset, experiment_id, joined)
    return experiment


class _Budget:
    def __init__(self, cap: float | None) -> None:
        self.cap, self.spent = cap, 0.0

    def left(self) -> float | None:
        if self.cap is None:
            return None
        left = self.cap - self.spent
        if left <= 0:
            raise BudgetExceededError(
                f"the experiment spent {self.spent:.6f} USD, its whole budget of {self.cap} USD "
                "(max_cost_usd); raise it or draw a smaller sample",
                spent_usd=self.spent,
                estimated_usd=0.0,
                budget_usd=self.cap,
            )
        return left

    def spend(self, usd: float) -> None:
        self.spent += usd


def _sample(
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


def _table(output: StepOutput, id_column: str) -> pd.DataFrame:
    frames = [frame for frame in output.tables.values() if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table.set_index(table[id_column].astype(str)) if len(table) else table


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["llm_status"] == "ok"] if len(table) else table


def _side(table: pd.DataFrame, output: StepOutput) -> Side:
    summary = output.summary
    latencies = [v for v in table.get("llm_latency_s", pd.Series(dtype=float)).tolist() if v]
    return Side(
        rows=summary.rows,
        failed=summary.failed,
        requests_sent=summary.requests_sent,
        cost_usd=float(table["llm_cost_usd"].sum()) if len(table) else 0.0,
        tokens=int(table["llm_input_tokens"].sum() + table["llm_output_tokens"].sum())
        if len(table)
        else 0,
        latency_s=statistics.fmean(latencies) if latencies else 0.0,
        task_version=output.task_version,
    )


def _interval(table: pd.DataFrame, requests: int) -> tuple[float, float, float]:
    costs = [float(v) for v in table.get("llm_cost_usd", pd.Series(dtype=float)).tolist()]
    if not costs:
        return (0.0, 0.0, 0.0)
    mean = statistics.fmean(costs)
    spread = 1.96 * statistics.stdev(costs) / math.sqrt(len(costs)) if len(costs) > 1 else 0.0
    return (max(0.0, requests * (mean - spread)), requests * mean, requests * (mean + spread))


def _side_by_side(tables: Mapping[str, pd.DataFrame], fields: list[str]) -> pd.DataFrame:
    columns = [*fields, "llm_status", "llm_cost_usd", "llm_input_tokens", "llm_output_tokens"]
    parts = []
    for label, table in tables.items():
        kept = [c for c in columns if c in table.columns]
        parts.append(table[kept].add_prefix(f"{label}."))
    joined = pd.concat(parts, axis=1)
    joined.index.name = "row_id"
    return joined.reset_index()


def _changed(
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
    order = row_distance(_ok(current), _ok(first), common).head(limit)
    labels = ["current", *(r.label for r in results)]
    header = ["row", "fields changed", *(f"{label}: {f}" for f in common[:3] for label in labels)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row_id, changed in order.items():
        cells = [str(row_id), str(changed)]
        for name in common[:3]:
            for label in labels:
                value = tables[label].at[row_id, name] if row_id in tables[label].index else ""
                cells.append(str(value).replace("|", "/")[:60])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _store(
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
