"""Launchpad jobs: ``experiment_job`` tries a candidate, ``estimate_job`` forecasts a run."""

# No "from __future__ import annotations": Dagster reads the op's config annotation at runtime.

from typing import Any

import dagster as dg
from pydantic import Field

from llm_assets.experiments.candidate import parse_sets
from llm_assets.experiments.report import describe_experiment, experiment_metadata
from llm_assets.experiments.run import run_experiment
from llm_assets.forecast import forecast_partitions

__all__ = ["EstimateConfig", "ExperimentConfig", "estimate_job", "experiment_job"]


class ExperimentConfig(dg.Config):
    """What to try, on which rows (the launchpad's run config of ``experiment_job``)."""

    asset: str = Field(description="The llm_asset to experiment on, e.g. review_insights.")
    partitions: list[str] = Field(
        default_factory=list,
        description="Partitions the sample is drawn from (none: unpartitioned).",
    )
    sample: int = Field(default=50, description="Rows in the sample.")
    fraction: float | None = Field(default=None, description="Or a share of the rows, e.g. 0.1.")
    seed: int = Field(default=0, description="Seed of the draw: the same seed, the same rows.")
    candidate_b: dict[str, str] = Field(
        description="Overrides of candidate B: model, system_prompt, user_prompt, temperature, "
        "max_output_tokens, output_schema (package.module:Model), params.NAME; values are read "
        "as JSON where they parse."
    )
    candidate_c: dict[str, str] = Field(
        default_factory=dict, description="A second candidate to compare (optional)."
    )
    forecast_partitions: list[str] = Field(
        default_factory=list,
        description="Partitions whose re-materialization is forecast (default: partitions).",
    )
    max_cost_usd: float | None = Field(default=None, description="Budget of the experiment.")


def experiment_job(
    name: str = "llm_experiment",
    *,
    llm_resource_key: str = "llm",
    ledger_resource_key: str = "ledger",
    io_manager_key: str = "io_manager",
) -> dg.JobDefinition:
    """A job that runs ``run_experiment`` on the code location's assets, from run config.

    Its one op, ``run_<name>``, reads the location's ``llm_asset`` definitions and the run's
    resources, answers the sample with the current task and the candidates, and reports the
    outcome as the op's output metadata (agreement, costs, forecast, the rows that changed
    most) with the side-by-side
    table stored as Parquet beside the asset's.

    Args:
        name: The job's name.
        llm_resource_key: The ``LLMResource`` the experimented assets use.
        ledger_resource_key: Their ``ResponseLedger``.
        io_manager_key: The ``ParquetIOManager`` holding them and their upstream tables.

    Returns:
        The job; add it to ``Definitions(jobs=[...])``.

    Examples:
        >>> experiment_job().name
        'llm_experiment'

        .. code-block:: python

            defs = dg.Definitions(assets=[...], jobs=[experiment_job()], resources={...})
            # Launchpad run config:
            # ops:
            #   run_llm_experiment:
            #     config: {asset: review_insights, partitions: ["2026-11-01"],
            #              sample: 50, candidate_b: {model: gpt-4.1-mini}}
    """
    keys = {llm_resource_key, ledger_resource_key, io_manager_key}

    @dg.op(
        name=f"run_{name}",
        description="Try a candidate task on a sample of an llm_asset's rows.",
        required_resource_keys=keys,
        # Nothing stored by an IO manager: the figures are the output's metadata, the table a
        # Parquet file beside the asset's.
        out=dg.Out(dg.Nothing),
    )
    def _experiment(context: dg.OpExecutionContext, config: ExperimentConfig) -> dg.Output[None]:
        candidates = {"B": _values(config.candidate_b)}
        if config.candidate_c:
            candidates["C"] = _values(config.candidate_c)
        outcome = run_experiment(
            context.repository_def,
            config.asset,
            list(config.partitions) or None,
            candidates,
            sample=None if config.fraction else config.sample,
            fraction=config.fraction,
            seed=config.seed,
            forecast_for=list(config.forecast_partitions) or None,
            max_cost_usd=config.max_cost_usd,
            run_id=context.run_id,
            resources=_run_resources(context, keys),
            log=context.log,
        )
        text = describe_experiment(outcome)
        context.log.info(text)
        return dg.Output(None, metadata=experiment_metadata(outcome))

    @dg.job(name=name, description="Try a change to an llm_asset's task on a sample first.")
    def _job() -> None:
        _experiment()

    return _job


def _values(overrides: dict[str, str]) -> dict[str, Any]:
    """Run-config overrides read as the command line's ``--set`` reads them."""
    return parse_sets(f"{name}={text}" for name, text in overrides.items())


def _run_resources(context: dg.OpExecutionContext, keys: set[str]) -> dict[str, Any]:
    """The run's initialized resources the op requires, by key."""
    return {key: getattr(context.resources, key) for key in keys}


class EstimateConfig(dg.Config):
    """Which partitions of which asset to forecast (the run config of ``estimate_job``)."""

    asset: str = Field(description="The llm_asset to forecast, e.g. review_insights.")
    partitions: list[str] = Field(
        default_factory=list, description="Partitions to forecast (none: unpartitioned)."
    )


def estimate_job(
    name: str = "llm_estimate",
    *,
    llm_resource_key: str = "llm",
    ledger_resource_key: str = "ledger",
    io_manager_key: str = "io_manager",
) -> dg.JobDefinition:
    """A dry run: what materializing partitions would send and cost, as run metadata.

    Its op, ``run_<name>``, calls ``forecast_partitions`` with the run's resources and sends
    nothing: rows, ledger hits, requests, tokens, dollars online and by batch, minutes at the
    known rate limit, and ``estimate``, the forecast in a sentence.

    Args:
        name: The job's name.
        llm_resource_key: The ``LLMResource`` the forecast assets use.
        ledger_resource_key: Their ``ResponseLedger``.
        io_manager_key: The ``ParquetIOManager`` holding their upstream tables.

    Returns:
        The job; add it to ``Definitions(jobs=[...])``.

    Examples:
        >>> estimate_job().name
        'llm_estimate'
    """
    keys = {llm_resource_key, ledger_resource_key, io_manager_key}

    @dg.op(
        name=f"run_{name}",
        description="Forecast what materializing partitions of an llm_asset would cost.",
        required_resource_keys=keys,
        out=dg.Out(dg.Nothing),
    )
    def _estimate(context: dg.OpExecutionContext, config: EstimateConfig) -> dg.Output[None]:
        forecast = forecast_partitions(
            context.repository_def,
            config.asset,
            list(config.partitions) or None,
            resources=_run_resources(context, keys),
        )
        text = forecast.describe()
        context.log.info(text)
        values = forecast.to_dict()
        metadata: dict[str, Any] = {"estimate": text.splitlines()[2]}
        for field in ("rows", "ledger_hits", "requests", "input_tokens", "output_tokens"):
            metadata[field] = values[field]
        metadata["online_usd"] = dg.MetadataValue.float(round(forecast.online_usd, 6))
        metadata["batch_usd"] = dg.MetadataValue.float(round(forecast.batch_usd, 6))
        minutes = forecast.minutes_at_limit
        metadata["minutes_at_limit"] = round(minutes, 2) if minutes is not None else "unknown"
        metadata["forecast"] = dg.MetadataValue.md(
            "\n".join(f"- {line}" for line in text.splitlines())
        )
        return dg.Output(None, metadata=metadata)

    @dg.job(name=name, description="What the next materialization would cost, sending nothing.")
    def _job() -> None:
        _estimate()

    return _job
