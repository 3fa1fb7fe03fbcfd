"""An experiment as people read it: run metadata for the Dagster UI, and lines for a terminal."""

from __future__ import annotations

from typing import Any

import dagster as dg

from llm_assets.experiments.run import CandidateResult, Experiment
from llm_assets.summary import USD_DIGITS, money

__all__ = ["describe_experiment", "experiment_metadata"]


def experiment_metadata(experiment: Experiment) -> dict[str, Any]:
    """Metadata of the experiment's output: the verdict first, then figures per candidate.

    For each candidate ``X``: ``X/agreement`` (mean over fields), ``X/fields`` (per field),
    ``X/failure_rate``, ``X/cost_per_row_usd``, ``X/cost_ratio`` (to the current task's),
    ``X/latency_s``, and the forecast of re-materializing (``X/forecast_requests``,
    ``X/forecast_usd`` with ``X/forecast_usd_low``/``_high``, ``X/forecast_minutes``).
    """
    current = experiment.current
    metadata: dict[str, Any] = {
        "experiment": describe_experiment(experiment).splitlines()[0],
        "experiment_id": experiment.experiment_id,
        "asset": experiment.asset,
        "partitions": ", ".join(str(p) for p in experiment.partitions),
        "sample_rows": current.rows,
        "seed": experiment.seed,
        "current/failure_rate": round(current.failure_rate, 4),
        "current/cost_per_row_usd": _usd(current.cost_per_row),
        "current/latency_s": round(current.latency_s, 3),
        "current/task_version": current.task_version,
    }
    for result in experiment.candidates:
        metadata.update(_candidate(result, current.cost_per_row))
    if experiment.changed_preview:
        metadata["rows_changed_most"] = dg.MetadataValue.md(experiment.changed_preview)
    if experiment.uri:
        metadata["side_by_side"] = dg.MetadataValue.path(experiment.uri)
    return metadata


def _candidate(result: CandidateResult, current_per_row: float) -> dict[str, Any]:
    side, label = result.side, result.label
    low, mid, high = result.forecast_usd
    ratio = side.cost_per_row / current_per_row if current_per_row else 0.0
    return {
        f"{label}/overrides": dg.MetadataValue.json(
            {
                k: v if isinstance(v, str | int | float | bool) else str(v)
                for k, v in result.overrides.items()
            }
        ),
        f"{label}/agreement": round(result.agreement, 4),
        f"{label}/fields": dg.MetadataValue.json(
            {
                f.field: {
                    "kind": f.kind,
                    "agreement": round(f.agreement, 4),
                    "similarity": None if f.similarity is None else round(f.similarity, 4),
                    "compared": f.compared,
                }
                for f in result.fields
            }
        ),
        f"{label}/failure_rate": round(side.failure_rate, 4),
        f"{label}/cost_per_row_usd": _usd(side.cost_per_row),
        f"{label}/cost_ratio": round(ratio, 4),
        f"{label}/latency_s": round(side.latency_s, 3),
        f"{label}/sample_requests_paid": side.requests_sent,
        f"{label}/forecast_requests": result.forecast.requests,
        f"{label}/forecast_ledger_hits": result.forecast.ledger_hits,
        f"{label}/forecast_usd": _usd(mid),
        f"{label}/forecast_usd_low": _usd(low),
        f"{label}/forecast_usd_high": _usd(high),
        f"{label}/forecast_minutes": (
            round(result.forecast.minutes_at_limit, 2)
            if result.forecast.minutes_at_limit is not None
            else "unknown until a run learns the rate limit"
        ),
    }


def describe_experiment(experiment: Experiment) -> str:
    """The experiment in a few lines, one per candidate after the first.

    The first line is the verdict, e.g. ``review_insights: B agrees 41% with the current
    answers, costs 16.7x per row; re-materializing 1 partition: 373 requests, $0.0613``.
    """
    current = experiment.current
    lines = []
    for result in experiment.candidates:
        low, mid, high = result.forecast_usd
        ratio = result.side.cost_per_row / current.cost_per_row if current.cost_per_row else 0.0
        count = len(experiment.partitions)
        lines.append(
            f"{experiment.asset}: {result.label} agrees {result.agreement:.0%} with the current "
            f"answers, costs {ratio:.2f}x per row; re-materializing {count} "
            f"partition{'s' if count != 1 else ''}: {result.forecast.requests:,} requests, "
            f"{money(mid)} ({money(low)} to {money(high)})"
        )
    lines.append(
        f"sample: {current.rows} rows (seed {experiment.seed}); current: failure rate "
        f"{current.failure_rate:.1%}, {money(current.cost_per_row)} per row"
    )
    for result in experiment.candidates:
        side = result.side
        fields = ", ".join(
            f"{f.field} {f.agreement:.0%}"
            + (f" (similarity {f.similarity:.2f})" if f.similarity is not None else "")
            for f in result.fields
        )
        lines.append(
            f"{result.label}: failure rate {side.failure_rate:.1%}, {money(side.cost_per_row)} "
            f"per row, {side.requests_sent} requests paid now; fields: {fields}"
        )
    if experiment.uri:
        lines.append(f"side by side: {experiment.uri}")
    return "\n".join(lines)


def _usd(value: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(value, USD_DIGITS))
