"""The ``estimate`` and ``experiment`` subcommands of ``python -m llm_assets``.

``__main__`` owns the parser, the code-location options and their loading; these two commands
forecast a run (``llm_assets.forecast``) and try a candidate task on a sample
(``llm_assets.experiments``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import dagster as dg

__all__ = [
    "add_estimate_parser",
    "add_experiment_parser",
    "run_estimate",
    "run_experiment_command",
]

#: Loads the code location the parsed options name.
Load = Callable[[argparse.Namespace], dg.Definitions]


def add_estimate_parser(sub: Any, add_location: Callable[[Any], None]) -> None:
    """Adds ``estimate``: a forecast of partitions, sending nothing (``llm_assets.forecast``)."""
    estimate = sub.add_parser(
        "estimate",
        help="forecast what materializing partitions would send and cost, sending nothing",
        description="Renders the partitions' prompts, asks the ledger which it answers, and "
        "prices the rest: rows, ledger hits, requests, tokens, dollars online and by batch, "
        "time at the known rate limit.",
    )
    estimate.add_argument("asset", help="asset key of an llm_asset, e.g. review_insights")
    chosen = estimate.add_mutually_exclusive_group()
    chosen.add_argument("--partition", action="append", help="a partition key (repeatable)")
    chosen.add_argument(
        "--partition-range", metavar="FIRST...LAST", help="partitions FIRST to LAST, inclusive"
    )
    estimate.add_argument("--json", action="store_true", help="print JSON")
    add_location(estimate)


def add_experiment_parser(sub: Any, add_location: Callable[[Any], None]) -> None:
    """Adds ``experiment``: try a candidate on a sample (``llm_assets.experiments``)."""
    experiment = sub.add_parser(
        "experiment",
        help="try a change (model, prompts, parameters, schema) on a sample before paying for it",
        description="Answers a reproducible sample of an llm_asset's rows with its task and with "
        "a candidate (--set), through the asset's endpoint and ledger, and reports per-field "
        "agreement, failure rates, cost per row and a forecast of re-materializing. "
        "--set NAME=VALUE takes model, system_prompt, user_prompt, temperature, "
        "max_output_tokens, output_schema (package.module:Model), params.NAME; @FILE reads a "
        "file. --set-c gives a second candidate (C) to compare with B.",
    )
    experiment.add_argument("asset", help="asset key of an llm_asset, e.g. review_insights")
    experiment.add_argument("--partition", action="append", help="a partition key (repeatable)")
    experiment.add_argument("--partition-range", metavar="FIRST...LAST", help="partitions")
    size = experiment.add_mutually_exclusive_group()
    size.add_argument("--sample", type=int, default=50, help="rows in the sample (default 50)")
    size.add_argument("--fraction", type=float, help="or a share of the rows, e.g. 0.1")
    experiment.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    experiment.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    experiment.add_argument(
        "--set-c", dest="sets_c", action="append", default=[], metavar="NAME=VALUE"
    )
    experiment.add_argument("--max-cost-usd", type=float, help="budget of the whole experiment")
    experiment.add_argument("--json", action="store_true", help="print the metadata as JSON")
    add_location(experiment)


def run_experiment_command(args: argparse.Namespace, load: Load) -> int:
    """Runs ``experiment`` and prints its outcome; 0 on success."""
    import json

    from llm_assets.experiments import (
        describe_experiment,
        experiment_metadata,
        parse_sets,
        run_experiment,
    )
    from llm_assets.recipes import partition_range

    defs = load(args)
    partitions: list[str | None] | None = list(args.partition or []) or None
    if args.partition_range:
        partitions = list(partition_range(defs, args.asset, args.partition_range))
    candidates = {"B": parse_sets(args.sets)}
    if args.sets_c:
        candidates["C"] = parse_sets(args.sets_c)
    outcome = run_experiment(
        defs,
        args.asset,
        partitions,
        candidates,
        sample=None if args.fraction else args.sample,
        fraction=args.fraction,
        seed=args.seed,
        max_cost_usd=args.max_cost_usd,
    )
    if args.json:
        metadata = {k: getattr(v, "value", v) for k, v in experiment_metadata(outcome).items()}
        print(json.dumps(metadata, indent=2, default=str))
    else:
        print(describe_experiment(outcome))
    return 0


def run_estimate(args: argparse.Namespace, load: Load) -> int:
    """Runs ``estimate`` and prints the forecast; 0 on success."""
    import json

    from llm_assets.forecast import forecast_partitions
    from llm_assets.recipes import partition_range

    defs = load(args)
    partitions: list[str | None] | None = list(args.partition or []) or None
    if args.partition_range:
        partitions = list(partition_range(defs, args.asset, args.partition_range))
    forecast = forecast_partitions(defs, args.asset, partitions)
    print(json.dumps(forecast.to_dict(), indent=2) if args.json else forecast.describe())
    return 0
