"""A ``dagster-webserver`` under test: starting it, and its GraphQL API (what the UI sends)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

#: The ``dagster-webserver`` executable of this virtual environment.
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))

#: Launches a run (variable ``executionParams``), as the UI's Materialize button does.
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
#: The status of one run (variable ``runId``).
RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at the moment of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """One request to the GraphQL API of the webserver on ``port``.

    Args:
        port: The webserver's port on 127.0.0.1.
        query: The GraphQL query or mutation.
        variables: Its variables.

    Returns:
        The answer's ``data``; the calling test fails on an answer with ``errors``.
    """
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


def wait_until_serving(
    proc: subprocess.Popen[Any], port: int, log_path: Path, timeout_s: float
) -> None:
    """Waits until the webserver ``proc`` on ``port`` answers; fails the test if it never does.

    Args:
        proc: The webserver's process; the test fails at once if it exits.
        port: Its port on 127.0.0.1.
        log_path: Its output, quoted in the failure.
        timeout_s: How long it may take to start.
    """
    url = f"http://127.0.0.1:{port}/server_info"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"webserver exited with {proc.returncode}: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail("webserver did not start: " + log_path.read_text())


def wait_for_run(port: int, run_id: str, timeout_s: float, poll_s: float) -> str | None:
    """Asks the webserver on ``port`` for the run's status until it has ended.

    Args:
        port: The webserver's port on 127.0.0.1.
        run_id: The run.
        timeout_s: How long to ask.
        poll_s: Seconds between two questions.

    Returns:
        The last status the webserver gave (``SUCCESS``, ``FAILURE``, ``CANCELED``, or one of a
        run still going when ``timeout_s`` ran out); ``None`` if it was never asked.
    """
    status = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = graphql(port, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ENDED:
            break
        time.sleep(poll_s)
    return status
