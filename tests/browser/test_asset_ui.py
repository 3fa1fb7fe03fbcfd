"""What a person does in the Dagster UI with an LLM asset, in headless Chromium.

From the asset graph to ``review_insights``, one partition launched with the Materialize
button, its rows, tokens and cost on the partition's page, the progress line in the run's
logs; and a partition whose run failed shows why.
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
import pytest

from tests.browser.conftest import FAILED_PARTITION, MATERIALIZED_PARTITION
from tests.browser.support import LOCATION, RUN_TIMEOUT_S, DagsterUI

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]

ASSET = "review_insights"
GROUP = "review_enrichment"
RUN_WAIT_MS = int(RUN_TIMEOUT_S * 1000)


def metadata_cell(page: Any, key: str) -> Any:
    """The value cell of the metadata table row named ``key`` on an asset page."""
    return page.locator(f"xpath=//tr[td[1][normalize-space(.)='{key}']]/td[2]").first


def as_number(text: str) -> float:
    """A number as the UI prints it (``36,195``, ``$0.0098``, ``0.009753``)."""
    return float(text.strip().lstrip("$").replace(",", ""))


@pytest.mark.timeout(600)
def test_materialize_partition_from_the_asset_page(page: Any, dagster_ui: DagsterUI) -> None:
    from playwright.sync_api import expect

    # The asset graph of the example's group; selecting the node opens its sidebar.
    page.goto(f"/locations/{LOCATION}/asset-groups/{GROUP}")
    page.get_by_text(ASSET, exact=True).first.click()
    page.get_by_role("link", name="View in Asset Catalog").click()
    expect(page).to_have_url(re.compile(rf"/assets/{ASSET}(\?|$)"))

    # The Materialize button opens the partition picker; one partition makes one run.
    page.get_by_role("button", name="Materialize…").click()
    picker = page.get_by_placeholder("No matching partitions")
    picker.fill(MATERIALIZED_PARTITION)
    picker.press("Enter")
    page.get_by_role("button", name="Launch 1 run").click()
    expect(page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)  # type: ignore[union-attr]

    # The run page follows the run live until it has succeeded.
    expect(page.get_by_role("img", name=re.compile("^run_(success|failure)$"))).to_be_visible(
        timeout=RUN_WAIT_MS
    )
    expect(page.get_by_role("img", name="run_success").first).to_be_visible()
    assert dagster_ui.wait_for_run(run_id) == dg.DagsterRunStatus.SUCCESS
    run = dagster_ui.instance.get_run_by_id(run_id)
    assert run is not None and run.tags.get("dagster/partition") == MATERIALIZED_PARTITION

    # The progress line the step logged while sending, found with the log filter.
    recorded = dagster_ui.latest_materialization(ASSET, MATERIALIZED_PARTITION)
    assert recorded.run_id == run_id
    metadata = recorded.asset_materialization.metadata  # type: ignore[union-attr]
    sent = int(metadata["requests_sent"].value)  # type: ignore[arg-type]
    assert sent > 0
    page.get_by_placeholder("Filter…").fill("req/min")
    progress = page.get_by_text(re.compile(rf"^{ASSET}: {sent}/{sent} requests, \d+ req/min"))
    expect(progress.first).to_be_visible()
    assert f"{int(metadata['tokens'].value):,} tokens" in progress.first.inner_text()  # type: ignore[arg-type]

    # The partition's page shows what the instance recorded for that materialization.
    page.goto(f"/assets/{ASSET}?view=partitions&partition={MATERIALIZED_PARTITION}")
    expect(page.get_by_text(re.compile(rf"^{run_id[:8]}$")).first).to_be_visible()
    for key in ("rows", "tokens", "cost_usd"):
        cell = metadata_cell(page, key)
        expect(cell).to_be_visible()
        shown, value = cell.inner_text().strip(), metadata[key].value
        if isinstance(value, (int, float)):
            assert as_number(shown) == value, f"{key}: page shows {shown!r}, instance has {value!r}"
        else:
            assert shown == str(value), f"{key}: page shows {shown!r}, instance has {value!r}"
    assert int(metadata["rows"].value) > 0  # type: ignore[arg-type]
    assert float(metadata["cost_usd"].value) > 0  # type: ignore[arg-type]


@pytest.mark.timeout(600)
def test_failed_partition_shows_its_reason(page: Any, dagster_ui: DagsterUI) -> None:
    from playwright.sync_api import expect

    # A budget far below the partition's estimate: the step refuses to send anything.
    run_config = {"ops": {ASSET: {"config": {"max_cost_usd": 0.01}}}}
    run_id = dagster_ui.launch(ASSET, FAILED_PARTITION, run_config)
    assert dagster_ui.wait_for_run(run_id) == dg.DagsterRunStatus.FAILURE
    failures = dagster_ui.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1
    error = failures[0].dagster_event.step_failure_data.error  # type: ignore[union-attr]
    reason = error.cause.message if error.cause is not None else error.message  # type: ignore[union-attr]
    assert reason.startswith("llm_assets.resources.errors.BudgetExceededError:"), reason
    assert "over its budget of $0.0100" in reason

    page.goto(f"/assets/{ASSET}?view=partitions&partition={FAILED_PARTITION}")
    alert = page.get_by_text("failed, and did not materialize this asset")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(f"Run {run_id[:8]} failed")
    page.get_by_role("button", name="View logs").click()
    page.get_by_placeholder("Filter…").last.fill("type:STEP_FAILURE")
    shown = page.get_by_text("BudgetExceededError: asset 'review_insights' would send")
    expect(shown.first).to_be_visible()
    expect(page.get_by_text(re.compile(r"over its budget of \$0\.0100")).first).to_be_visible()
    assert reason.split(": ", 1)[1].splitlines()[0] in shown.first.inner_text()
