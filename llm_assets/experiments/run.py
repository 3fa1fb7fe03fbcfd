"""Run an experiment: the current task and its candidates on one reproducible sample.

Both sides go through the asset's own ``LLMResource``, rate limiter, claims and ledger, with
the asset's name on every ledger entry: the current side's answers are the ledger's when the
partitions were materialized (free), and what a candidate paid for is what the asset will ask
once the candidate is adopted, so adopting pays only for the rows the sample did not hold.
"""

from __future__ import annotations

import logging
import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.experiments.candidate import candidate_task
from llm_assets.experiments.compare import FieldAgreement, field_agreement
from llm_assets.experiments.tables import (
    answered_rows,
    changed_preview,
    cost_interval,
    draw_sample,
    side_by_side,
    step_table,
    store_table,
)
from llm_assets.forecast import Forecast, forecast_partitions
from llm_assets.recipes import (
    CodeLocation,
    check_partitions,
    find_recipe,
    recipe_resources,
    resources_of,
    upstream_frames,
)
from llm_assets.rendering import ROW_INDEX_COLUMN, check_columns
from llm_assets.resources.errors import BudgetExceededError, UserError
from llm_assets.runner import StepInfo, StepOutput, run_task
from llm_assets.task import LLMTask

__all__ = ["CandidateResult", "Experiment", "Side", "run_experiment"]


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
        defs: The code location's definitions (its resources, unless ``resources``).
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
    llm, ledger = recipe_resources(recipe, resources, asset)
    tasks = {label: candidate_task(recipe.task, o, label=label) for label, o in candidates.items()}
    frames = draw_sample(
        upstream_frames(defs, recipe, keys, asset, resources), sample, fraction, seed
    )
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
            ledger=ledger,
            step=step,
            log=log,
            max_cost_usd=budget.left(),
            passthrough_columns=passthrough,
        )
        budget.spend(output.summary.cost_usd)
        return output

    id_column = recipe.task.id_column or ROW_INDEX_COLUMN
    current_out = answer(recipe.task)
    current = step_table(current_out, id_column)
    results: list[CandidateResult] = []
    tables = {"current": current}
    for label, task in tasks.items():
        out = answer(task)
        table = step_table(out, id_column)
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
                fields=field_agreement(
                    answered_rows(current), answered_rows(table), recipe.task.output_schema
                ),
                forecast=forecast,
                forecast_usd=cost_interval(table, forecast.requests),
            )
        )
    fields = [name for name in recipe.task.output_schema.model_fields]
    every = list(
        dict.fromkeys([*fields, *(f for t in tasks.values() for f in t.output_schema.model_fields)])
    )
    joined = side_by_side(tables, every)
    experiment = Experiment(
        experiment_id=experiment_id,
        asset=asset,
        partitions=keys,
        seed=seed,
        current=_side(current, current_out),
        candidates=results,
        table=joined,
    )
    experiment.changed_preview = changed_preview(current, tables, fields, results)
    experiment.uri = store_table(defs, resources, asset, experiment_id, joined)
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
