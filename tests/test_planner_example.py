"""The example project's planner asset, and a planner asset launched through the webserver."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from reviews_example.pipeline import raw_reviews, review_insights
from reviews_example.research import MAX_REVIEWS, RESEARCH_ASSETS

from llm_assets.simulator import SimulatorServer
from llm_assets.trace import format_trace, trace_row
from tests import planner_support as support
from tests.conftest import REPO_ROOT, make_resources
from tests.webserver_support import (
    LAUNCH,
    WEBSERVER,
    free_port,
    graphql,
    wait_for_run,
    wait_until_serving,
)

DAY = "2026-11-02"


def test_example_research_asset_plans_runs_and_traces(
    tmp_path: Path, simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance
) -> None:
    resources = make_resources(simulator, tmp_path)
    defs = dg.Definitions(
        assets=[raw_reviews, review_insights, *RESEARCH_ASSETS], resources=resources
    )
    result = dg.materialize(
        [raw_reviews, review_insights, *RESEARCH_ASSETS],
        resources=resources,
        instance=sqlite_instance,
        partition_key=DAY,
    )
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "review_research" / f"{DAY}.parquet")
    assert 0 < len(table) <= MAX_REVIEWS
    assert (table["llm_status"] == "ok").all()
    first = json.loads(table["tool_calls"][0])
    assert {c["tool"] for c in first} == {"product_rating_stats", "similar_complaints"}
    assert all(c["arguments"]["product"] == table["product"][0] for c in first)
    assert all(c["arguments"]["day"] == DAY for c in first)
    stats = next(c for c in first if c["tool"] == "product_rating_stats")
    assert stats["result"]["reviews"] > 0

    trace = trace_row(defs, sqlite_instance, "review_research", table["review_id"][0], DAY)
    text = format_trace(trace)
    assert "tool calls (planned by request" in text
    assert "product_rating_stats ok" in text


GRAPHQL_TIMEOUT_S = 420


@pytest.fixture
def planner_webserver(tmp_path: Path, simulator: SimulatorServer) -> Iterator[int]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {REPO_ROOT / 'tests' / 'planner_location.py'}\n"
        f"      working_directory: {REPO_ROOT}\n"
        "      location_name: planner_tests\n"
    )
    env = dict(os.environ)
    env.update(support.env(tmp_path, simulator.base_url, PLANNER_TEST_TOOLS="lookup_product"))
    env["DAGSTER_HOME"] = str(home)
    port = free_port()
    log_path = tmp_path / "webserver.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_serving(proc, port, log_path, timeout_s=180)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(GRAPHQL_TIMEOUT_S + 200)
def test_planner_asset_launched_through_webserver_graphql(
    planner_webserver: int, tmp_path: Path, simulator: SimulatorServer
) -> None:
    params = {
        "selector": {
            "repositoryLocationName": "planner_tests",
            "repositoryName": "__repository__",
            "pipelineName": "planner_job",
            "assetSelection": [{"path": ["tickets"]}, {"path": [support.ASSET]}],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": support.PARTITION}]},
    }
    launched = graphql(planner_webserver, LAUNCH, {"executionParams": params})[
        "launchPipelineExecution"
    ]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = wait_for_run(planner_webserver, run_id, timeout_s=GRAPHQL_TIMEOUT_S, poll_s=2)
    assert status == "SUCCESS"
    table = pd.read_parquet(tmp_path / "data" / support.ASSET / f"{support.PARTITION}.parquet")
    assert (table["llm_run_id"] == run_id).all()
    assert support.count("lookup_product", tmp_path) == 2
    assert simulator.stats()["chat_completions"] == 4
