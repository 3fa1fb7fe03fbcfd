"""The nightly job and a dry run launched through the webserver's GraphQL API (the launchpad).

On the browser package's ``dagster dev`` (Postgres instance, queued runs the daemon starts):
``nightly_enrichment`` for one day answers every review once and writes the day's tables; the
``llm_estimate`` job then finds every request of that day in the ledger and forecasts $0.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd
import pytest
from reviews_example.sample_reviews import generate_reviews

from tests.browser.support import LOCATION, DagsterUI
from tests.webserver_support import LAUNCH

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: A day no other test of the package touches (the job materializes its raw reviews too).
PARTITION = "2026-11-05"
NIGHTLY = [
    "raw_reviews", "review_insights", "review_insights_reviewed",
    "review_insights_reviewed_quarantine", "daily_digest",
]  # fmt: skip


def launch(ui: DagsterUI, params: dict[str, Any]) -> str:
    """Launches a run as the launchpad does; returns its id."""
    launched = ui.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def output_metadata(ui: DagsterUI, run_id: str) -> dict[str, Any]:
    """The single op's output metadata of a run, from the instance's event log."""
    records = ui.instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
    ).records
    (output,) = [
        r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event
    ]
    assert output is not None and output.step_output_data is not None
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


@pytest.mark.timeout(600)
def test_the_nightly_job_then_a_dry_run_through_graphql(dagster_ui: DagsterUI) -> None:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    run_id = launch(
        dagster_ui,
        {
            "selector": {
                **selector,
                "pipelineName": "nightly_enrichment",
                "assetSelection": [{"path": [key]} for key in NIGHTLY],
            },
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
        },
    )
    assert dagster_ui.wait_for_run(run_id) == dg.DagsterRunStatus.SUCCESS
    insights = pd.read_parquet(dagster_ui.data_dir / "review_insights" / f"{PARTITION}.parquet")
    assert len(insights) == len(generate_reviews(PARTITION))
    assert (insights["llm_run_id"] == run_id).all()
    # Every review answered once, and one digest of the day's reviewed rows.
    sent = {
        asset: dagster_ui.latest_materialization(asset, PARTITION)
        .asset_materialization.metadata["requests_sent"]  # type: ignore[union-attr]
        .value
        for asset in ("review_insights", "daily_digest")
    }
    assert sent == {"review_insights": len(insights), "daily_digest": 1}
    for key in NIGHTLY:
        assert dagster_ui.latest_materialization(key, PARTITION).run_id == run_id

    # The dry run of the day again: every request is in the ledger, nothing would be paid.
    estimate_run = launch(
        dagster_ui,
        {
            "selector": {**selector, "pipelineName": "llm_estimate"},
            "mode": "default",
            "runConfigData": {
                "ops": {
                    "run_llm_estimate": {
                        "config": {"asset": "review_insights", "partitions": [PARTITION]}
                    }
                }
            },
        },
    )
    assert dagster_ui.wait_for_run(estimate_run) == dg.DagsterRunStatus.SUCCESS
    estimate = output_metadata(dagster_ui, estimate_run)
    assert estimate["rows"] == len(insights) and estimate["requests"] == 0
    assert estimate["ledger_hits"] > 0 and estimate["online_usd"] == 0
    assert "$0 online" in estimate["estimate"]
