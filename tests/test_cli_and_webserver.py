"""The ``dagster`` CLI and the webserver's GraphQL API (what the UI's Materialize button sends)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from reviews_example.sample_reviews import generate_reviews

from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT
from tests.webserver_support import (
    LAUNCH,
    WEBSERVER,
    free_port,
    graphql,
    wait_for_run,
    wait_until_serving,
)

DAGSTER = str(Path(sys.executable).with_name("dagster"))
PARTITION = "2026-11-02"
# The run takes 15 s on an idle machine; beside the rest of the suite and a busy neighbour on
# two cores it has taken over 180 s (four processes to start: run worker and three steps).
RUN_TIMEOUT_S = 360


def _env(
    tmp_path: Path, simulator: SimulatorServer, postgres_url: str | None = None
) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # Without a daemon, runs must launch straight away rather than wait in a queue.
    storage = "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n"
    (home / "dagster.yaml").write_text(
        (storage if postgres_url else "")
        + "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    env = dict(os.environ)
    if postgres_url:
        env["DAGSTER_PG_URL"] = postgres_url
    env.update(
        DAGSTER_HOME=str(home),
        LLM_ASSETS_BASE_URL=simulator.base_url,
        LLM_ASSETS_DATA_DIR=str(tmp_path / "data"),
        LLM_ASSETS_LEDGER_PATH=str(tmp_path / "ledger.sqlite"),
        LLM_ASSETS_ENV="local",
    )
    return env


def test_definitions_validate_passes_on_workspace(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=_env(tmp_path, simulator),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def webserver(tmp_path: Path, simulator: SimulatorServer, postgres_url: str) -> Iterator[int]:
    """The webserver on the example's workspace, its instance on a fresh Postgres database."""
    port = free_port()
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=_env(tmp_path, simulator, postgres_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(proc, port, tmp_path / "webserver.log", timeout_s=120)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 180)  # the webserver's start included
def test_materialize_through_webserver_graphql(
    webserver: int,
    tmp_path: Path,
    simulator: SimulatorServer,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = {
        "selector": {
            "repositoryLocationName": "llm_assets",
            "repositoryName": "__repository__",
            "pipelineName": "nightly_enrichment",
            "assetSelection": [
                {"path": ["raw_reviews"]},
                {"path": ["review_insights"]},
                {"path": ["review_insights_reviewed"]},
                {"path": ["review_insights_reviewed_quarantine"]},
                {"path": ["daily_digest"]},
            ],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
    }
    launched = graphql(webserver, LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    status = wait_for_run(webserver, run_id, timeout_s=RUN_TIMEOUT_S, poll_s=1)
    assert status == "SUCCESS"
    insights = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{PARTITION}.parquet")
    assert len(insights) == len(generate_reviews(PARTITION))
    assert (insights["llm_run_id"] == run_id).all()
    assert simulator.stats()["chat_completions"] == len(insights) + 1

    # The experiment job from the launchpad: a candidate model on 20 rows of that day.
    simulator.reset()
    config = {
        "asset": "review_insights",
        "partitions": [PARTITION],
        "sample": 20,
        "seed": 5,
        "candidate_b": {"model": "sim-large"},
    }
    experiment = {
        "selector": {
            "repositoryLocationName": "llm_assets",
            "repositoryName": "__repository__",
            "pipelineName": "llm_experiment",
        },
        "mode": "default",
        "runConfigData": {"ops": {"run_llm_experiment": {"config": config}}},
    }
    launched = graphql(webserver, LAUNCH, {"executionParams": experiment})[
        "launchPipelineExecution"
    ]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    experiment_run = launched["run"]["runId"]
    assert wait_for_run(webserver, experiment_run, timeout_s=RUN_TIMEOUT_S, poll_s=1) == "SUCCESS"
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)  # read by the instance's dagster.yaml
    metadata = _output_metadata(tmp_path, experiment_run)
    assert metadata["sample_rows"] == 20 and 0 <= metadata["B/agreement"] < 1
    assert metadata["B/cost_ratio"] > 1  # sim-large is priced like gpt-4o
    assert metadata["B/forecast_requests"] == len(insights) - 20
    assert metadata["B/forecast_usd"] > 0 and "B agrees" in metadata["experiment"]
    # The current answers came from the ledger: only the candidate's 20 were sent.
    assert simulator.stats()["chat_completions"] == 20
    stored = tmp_path / "data" / "experiments" / "review_insights" / f"{experiment_run}.parquet"
    assert len(pd.read_parquet(stored)) == 20

    # The dry run of the day again: every request is in the ledger, nothing would be paid.
    dry_run = {
        "selector": {**experiment["selector"], "pipelineName": "llm_estimate"},
        "mode": "default",
        "runConfigData": {
            "ops": {
                "run_llm_estimate": {
                    "config": {"asset": "review_insights", "partitions": [PARTITION]}
                }
            }
        },
    }
    launched = graphql(webserver, LAUNCH, {"executionParams": dry_run})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    estimate_run = launched["run"]["runId"]
    assert wait_for_run(webserver, estimate_run, timeout_s=RUN_TIMEOUT_S, poll_s=1) == "SUCCESS"
    estimate = _output_metadata(tmp_path, estimate_run)
    assert estimate["rows"] == len(insights) and estimate["requests"] == 0
    assert estimate["ledger_hits"] > 0 and estimate["online_usd"] == 0
    assert "$0 online" in estimate["estimate"]
    assert simulator.stats()["chat_completions"] == 20  # the dry run sent nothing


def _output_metadata(tmp_path: Path, run_id: str) -> dict[str, Any]:
    """The experiment op's output metadata, read from the Postgres instance's event log."""
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
        ).records
    (output,) = [
        r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event
    ]
    assert output is not None and output.step_output_data is not None
    return {k: v.value for k, v in output.step_output_data.metadata.items()}
