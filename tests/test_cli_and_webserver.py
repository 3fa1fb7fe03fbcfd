"""The ``dagster`` CLI and the webserver's GraphQL API (what the UI's Materialize button sends)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llm_assets.example.sample_reviews import generate_reviews
from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT

DAGSTER = str(Path(sys.executable).with_name("dagster"))
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))
PARTITION = "2026-11-02"

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""


def _env(tmp_path: Path, simulator: SimulatorServer) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # Without a daemon, runs must launch straight away rather than wait in a queue.
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    env = dict(os.environ)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture
def webserver(tmp_path: Path, simulator: SimulatorServer) -> Iterator[int]:
    port = _free_port()
    log = (tmp_path / "webserver.log").open("w")
    proc = subprocess.Popen(
        [WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=_env(tmp_path, simulator),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("webserver did not start: " + (tmp_path / "webserver.log").read_text())
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_materialize_through_webserver_graphql(
    webserver: int, tmp_path: Path, simulator: SimulatorServer
) -> None:
    params = {
        "selector": {
            "repositoryLocationName": "llm_assets",
            "repositoryName": "__repository__",
            "pipelineName": "nightly_enrichment",
            "assetSelection": [
                {"path": ["raw_reviews"]},
                {"path": ["review_insights"]},
                {"path": ["daily_digest"]},
            ],
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
    }
    launched = _graphql(webserver, LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    status = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = _graphql(webserver, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    insights = pd.read_parquet(tmp_path / "data" / "review_insights" / f"{PARTITION}.parquet")
    assert len(insights) == len(generate_reviews(PARTITION))
    assert (insights["llm_run_id"] == run_id).all()
    assert simulator.stats()["chat_completions"] == len(insights) + 1
