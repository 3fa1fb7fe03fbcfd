"""The Dagster UI for browser tests: ``dagster dev`` on a Postgres instance, beside the simulator.

``dagster dev`` (the command ``python -m llm_assets ui`` runs) starts ``dagster-webserver``, the
``dagster-daemon`` and one code server for the example location ``reviews_example.definitions``. The
instance is the repository's production ``dagster.yaml`` (Postgres storage, queued runs that
only the daemon launches) in a fresh ``DAGSTER_HOME``. The review page
(``python -m llm_assets review serve``, as ``ui`` starts it too) runs beside it with a review
token, and the gates' ``review_url`` metadata points at it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from reviews_example.pipeline import raw_reviews

from llm_assets.resources.storage import ParquetIOManager
from llm_assets.supervisor import Child, Supervisor
from tests.conftest import REPO_ROOT
from tests.webserver_support import LAUNCH, free_port, graphql

CHROMIUM_ENV = "LLM_ASSETS_CHROMIUM"
ARTIFACTS_ENV = "LLM_ASSETS_TEST_ARTIFACTS"
LOCATION = "llm_assets"
# On a loaded two-core machine a run takes 15-30 s from the click to its end; allow far more.
RUN_TIMEOUT_S = 240.0
START_TIMEOUT_S = 240.0

WORKSPACE_STATUS = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus
      locationOrLoadError { __typename ... on PythonError { message } } } }
  }
}
"""
SET_NUX_SEEN = "mutation SetNuxSeen { setNuxSeen }"


def chromium_or_skip() -> str:
    """The Chromium executable to drive, or a skip saying how to get one."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        if not os.access(configured, os.X_OK):
            pytest.skip(
                f"{CHROMIUM_ENV}={configured} is not an executable file: point it at a "
                "Chromium or Chrome executable, or unset it to use `chromium` from PATH"
            )
        return configured
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            "no Chromium to drive: `apt-get install chromium` (Debian/Ubuntu), or set "
            f"{CHROMIUM_ENV} to a Chromium or Chrome executable"
        )
    return found


def artifacts_dir() -> Path:
    """Where failing browser tests leave screenshots, page HTML and server logs."""
    return Path(os.environ.get(ARTIFACTS_ENV) or REPO_ROOT / ".test-artifacts")


def save_page(page: Any, test_name: str, extra_files: tuple[Path, ...] = ()) -> Path:
    """Saves a full-page screenshot, the page's HTML and ``extra_files`` for one failed test.

    Returns:
        The folder holding them (one per test, replaced on each failure).
    """
    folder = artifacts_dir() / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "url.txt").write_text(page.url + "\n")
    page.screenshot(path=str(folder / "screenshot.png"), full_page=True, timeout=30_000)
    (folder / "page.html").write_text(page.content())
    for path in extra_files:
        if path.is_file():
            shutil.copy(path, folder / path.name)
    return folder


@dataclass
class DagsterUI:
    """A running Dagster UI and the instance behind it."""

    port: int
    home: Path
    data_dir: Path
    log_path: Path
    instance: dg.DagsterInstance
    review_port: int = 0
    review_token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def review_url(self) -> str:
        """The review page's address."""
        return f"http://127.0.0.1:{self.review_port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request to the webserver's GraphQL API (what the UI itself sends)."""
        return graphql(self.port, query, variables or {})

    def launch(self, asset: str, partition: str, run_config: dict[str, Any]) -> str:
        """Queues a run of ``asset`` for ``partition`` as the launchpad does; returns its id."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "pipelineName": "__ASSET_JOB",
                "assetSelection": [{"path": [asset]}],
            },
            "mode": "default",
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        }
        launched = self.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def wait_for_run(self, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dg.DagsterRunStatus:
        """Waits until the run has ended and returns its status."""
        ended = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
        ended.add(dg.DagsterRunStatus.CANCELED)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in ended:
                return run.status
            time.sleep(1.0)
        status = getattr(self.instance.get_run_by_id(run_id), "status", None)
        pytest.fail(f"run {run_id} still {status} after {timeout_s:.0f} s; see {self.log_path}")

    def latest_materialization(self, asset: str, partition: str) -> dg.EventLogRecord:
        """The instance's latest materialization of one partition of ``asset``."""
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
            limit=1,
        ).records
        assert records, f"the instance holds no materialization of {asset} {partition}"
        return records[0]

    def wait_until_loaded(self, process: Any, timeout_s: float = START_TIMEOUT_S) -> None:
        """Waits until the webserver answers and the code location has loaded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited: {self.log_path.read_text()[-3000:]}")
            try:
                workspace = self.graphql(WORKSPACE_STATUS)["workspaceOrError"]
            except OSError:
                time.sleep(1.0)
                continue
            entries = {e["name"]: e for e in workspace.get("locationEntries", [])}
            entry = entries.get(LOCATION)
            if entry is not None and entry["loadStatus"] == "LOADED":
                error = entry["locationOrLoadError"]
                assert error["__typename"] != "PythonError", error["message"]
                return
            time.sleep(1.0)
        pytest.fail(
            f"the Dagster UI did not load {LOCATION!r} in {timeout_s:.0f} s: {self.log_path}"
        )


def materialize_upstream(
    instance: dg.DagsterInstance, data_dir: Path, partitions: list[str]
) -> None:
    """Materializes ``raw_reviews`` for ``partitions`` so ``review_insights`` has input."""
    for partition in partitions:
        result = dg.materialize(
            [raw_reviews],
            partition_key=partition,
            instance=instance,
            resources={"io_manager": ParquetIOManager(base_dir=str(data_dir))},
        )
        assert result.success


@contextmanager
def running_dagster_ui(
    workdir: Path, postgres_url: str, simulator_url: str, upstream_partitions: list[str]
) -> Iterator[DagsterUI]:
    """Starts ``dagster dev`` on a Postgres instance in ``workdir``, stopped on exit.

    ``upstream_partitions`` of ``raw_reviews`` are materialized on the instance first.
    """
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    port, review_port = free_port(), free_port()
    review_token = secrets.token_urlsafe(16)
    env = dict(
        os.environ,
        LLM_ASSETS_REVIEW_URL=f"http://127.0.0.1:{review_port}",
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=postgres_url,
        LLM_ASSETS_ENV="local",
        LLM_ASSETS_BASE_URL=simulator_url,
        LLM_ASSETS_DATA_DIR=str(workdir / "data"),
        LLM_ASSETS_LEDGER_PATH=str(workdir / "ledger.sqlite"),
        LLM_ASSETS_INBOX_DIR=str(workdir / "inbox"),
        # The pages, not the step processes, are under test: each run's steps in its own
        # process spare a fork server and a fork per step for every run the tests launch.
        LLM_ASSETS_EXECUTOR="in_process",
    )
    with ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("DAGSTER_PG_URL", postgres_url)  # the instance's dagster.yaml reads it
        instance = dg.DagsterInstance.from_config(str(home))
        stack.callback(instance.dispose)

        log_path = workdir / "dagster-dev.log"
        log = stack.enter_context(log_path.open("wb"))
        dev_command = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
        dev = Child(
            "dagster dev",
            [*dev_command, "-w", str(REPO_ROOT / "workspace.yaml")],
            stop_signal=signal.SIGINT,
            env=env,
            stdout=log,
        )
        review_log = stack.enter_context((workdir / "review-page.log").open("wb"))
        review = Child(
            "the review page",
            [sys.executable, "-m", "llm_assets", "review", "serve", "--port", str(review_port),
             "-w", str(REPO_ROOT / "workspace.yaml")],
            env=dict(env, LLM_ASSETS_REVIEW_TOKEN=review_token),
            stdout=review_log,
        )  # fmt: skip
        # Nothing is under test when the package ends: dagster dev gets a moment to stop, then
        # its process group is ended (its orderly shutdown took 10-17 s on a loaded machine).
        supervisor = Supervisor(grace_s=2.0, terminate_s=2.0)
        stack.callback(supervisor.stop)
        process = supervisor.start(dev)
        supervisor.start(review)
        # While the UI starts, so that the two overlap.
        materialize_upstream(instance, workdir / "data", upstream_partitions)
        ui = DagsterUI(port, home, workdir / "data", log_path, instance, review_port, review_token)
        ui.wait_until_loaded(process)
        ui.graphql(SET_NUX_SEEN)  # the one-time community dialog would cover the page
        yield ui
