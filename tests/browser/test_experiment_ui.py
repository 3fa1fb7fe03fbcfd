"""An experiment in the Dagster UI: launched as the launchpad does, its verdict on the run page.

The run page of an ``llm_experiment`` run shows the verdict line the op logged and the op's
output metadata (agreement, cost ratio, forecast, the rows that changed most). The test saves
the page as ``experiment_run.png`` among the browser artifacts; with
``LLM_ASSETS_DOCS_SCREENSHOTS=1`` it also refreshes ``docs/img/experiment_run.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import dagster as dg
import pytest

from tests.browser.conftest import FAILED_PARTITION
from tests.browser.support import LOCATION, DagsterUI, artifacts_dir
from tests.conftest import REPO_ROOT
from tests.webserver_support import LAUNCH

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(600)
def test_an_experiment_run_shows_its_verdict_and_figures(page: Any, dagster_ui: DagsterUI) -> None:
    from playwright.sync_api import expect

    config = {
        "asset": "review_insights",
        "partitions": [FAILED_PARTITION],  # its upstream rows exist from the start
        "sample": 12,
        "seed": 1,
        "candidate_b": {"model": "sim-large"},
    }
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "pipelineName": "llm_experiment",
        },
        "mode": "default",
        "runConfigData": {"ops": {"run_llm_experiment": {"config": config}}},
    }
    launched = dagster_ui.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert dagster_ui.wait_for_run(run_id) == dg.DagsterRunStatus.SUCCESS

    page.set_viewport_size({"width": 1440, "height": 1000})
    page.goto(f"/runs/{run_id}")
    page.get_by_placeholder("Filter…").fill("agrees")
    verdict = page.get_by_text(re.compile(r"review_insights: B agrees \d+% with the current"))
    expect(verdict.first).to_be_visible()
    text = verdict.first.inner_text()
    assert "x per row" in text and "re-materializing 1 partition" in text
    # The output's metadata: the candidate's figures as the instance recorded them.
    page.get_by_placeholder("Filter…").fill("Yielded output")
    expect(page.get_by_text("sample_rows").first).to_be_visible()
    page.get_by_text("View full message").first.click()
    dialog = page.get_by_role("dialog")
    for key in ("B/agreement", "B/cost_ratio", "B/forecast_usd", "rows_changed_most"):
        expect(dialog.get_by_text(key, exact=True).first).to_be_visible()

    page.wait_for_timeout(1_000)  # the dialog's fade-in, for the picture
    shot = artifacts_dir() / "experiment_run.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False, timeout=30_000)
    if os.environ.get("LLM_ASSETS_DOCS_SCREENSHOTS") == "1":
        shutil.copy(shot, REPO_ROOT / "docs" / "img" / "experiment_run.png")
