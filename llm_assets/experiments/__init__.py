"""Try a change before paying for it: a candidate task on a sample, beside the current one.

``run_experiment`` answers a reproducible sample of an ``llm_asset``'s rows with its task and
with one or two candidates (overrides of the model, prompts, parameters or output schema),
through the asset's own endpoint, limiter, claims and ledger, and reports per-field agreement,
failure rates, tokens, cost and latency of both, the rows that changed most, and a forecast of
re-materializing partitions with each candidate. ``experiment_job`` runs it as a Dagster job;
``python -m llm_assets experiment`` from the command line. What the sample paid for is in the
ledger, so adopting a candidate pays only for the rows the sample did not hold.
"""

from llm_assets.experiments.candidate import SETTABLE, candidate_task, parse_sets
from llm_assets.experiments.compare import FieldAgreement, field_agreement
from llm_assets.experiments.job import (
    EstimateConfig,
    ExperimentConfig,
    estimate_job,
    experiment_job,
)
from llm_assets.experiments.report import describe_experiment, experiment_metadata
from llm_assets.experiments.run import CandidateResult, Experiment, Side, run_experiment

__all__ = [
    "SETTABLE",
    "CandidateResult",
    "EstimateConfig",
    "Experiment",
    "ExperimentConfig",
    "FieldAgreement",
    "Side",
    "candidate_task",
    "describe_experiment",
    "estimate_job",
    "experiment_job",
    "experiment_metadata",
    "field_agreement",
    "parse_sets",
    "run_experiment",
]
