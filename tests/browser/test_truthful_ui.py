"""What a new user reads in the Dagster UI about the example is true, in headless Chromium.

The planner asset ``review_research`` shows the endpoint it is sent to (not ``openai`` when it
talks to the simulator) and a description with its tools, planner prompt and model; the
quarantine hangs off the table whose failed rows it holds; the provenance columns are
described. What costs a page load each (sensors, the schedule, jobs) is read through the
GraphQL API the UI itself uses.
"""

from __future__ import annotations

from typing import Any

import pytest

from llm_assets.endpoints import endpoint_kind
from llm_assets.simulator import SimulatorServer
from tests.browser.support import LOCATION, DagsterUI

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]

ASSET_NODES = """
query Nodes($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    kinds
    description
    jobNames
    dependencyKeys { path }
  }
}
"""
AUTOMATION = """
query Automation($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      sensors { name description sensorState { status } }
      schedules { name description scheduleState { status } }
    }
  }
}
"""


def _nodes(ui: DagsterUI, *keys: str) -> dict[str, dict[str, Any]]:
    variables = {"keys": [{"path": [key]} for key in keys]}
    nodes = ui.graphql(ASSET_NODES, variables)["assetNodes"]
    return {node["assetKey"]["path"][-1]: node for node in nodes}


@pytest.mark.timeout(300)
def test_planner_asset_page_shows_its_endpoint_and_what_it_asks(
    page: Any, dagster_ui: DagsterUI, _simulator_server: SimulatorServer
) -> None:
    from playwright.sync_api import expect

    endpoint = endpoint_kind(_simulator_server.base_url)
    assert endpoint != "openai"
    nodes = _nodes(dagster_ui, "review_research", "review_insights")
    assert set(nodes["review_research"]["kinds"]) == {endpoint, "pandas"}
    assert set(nodes["review_insights"]["kinds"]) == {endpoint, "pandas"}
    assert "critical_review_research" in nodes["review_research"]["jobNames"]

    page.goto("/assets/review_research")
    expect(page.get_by_text(endpoint, exact=True).first).to_be_visible()
    assert page.get_by_text("openai", exact=True).count() == 0
    expect(page.get_by_text("Planner prompt").first).to_be_visible()
    expect(page.get_by_text("product_rating_stats", exact=True).first).to_be_visible()
    page.get_by_role("button", name="Show more").first.click()
    expect(page.get_by_text("sim-small", exact=True).first).to_be_visible()
    expect(page.get_by_text("Synthesizer").first).to_be_visible()


@pytest.mark.timeout(300)
def test_quarantine_hangs_off_its_table_in_the_lineage(page: Any, dagster_ui: DagsterUI) -> None:
    from playwright.sync_api import expect

    nodes = _nodes(dagster_ui, "review_insights_quarantine")
    assert nodes["review_insights_quarantine"]["dependencyKeys"] == [{"path": ["review_insights"]}]

    # The nearest neighbours of the quarantine: its table, not the table's upstream.
    page.goto("/assets/review_insights_quarantine?view=lineage")
    expect(page.get_by_text("review_insights", exact=True).first).to_be_visible()
    expect(page.get_by_text("review_insights_quarantine", exact=True).first).to_be_visible()
    assert page.get_by_text("raw_reviews", exact=True).count() == 0


@pytest.mark.timeout(300)
def test_provenance_columns_and_cost_estimate_are_explained(
    page: Any, dagster_ui: DagsterUI
) -> None:
    from playwright.sync_api import expect

    description = _nodes(dagster_ui, "review_insights")["review_insights"]["description"]
    assert "`estimated_cost_usd` is the estimate made before sending" in description

    page.goto("/assets/review_insights")
    page.get_by_placeholder("Filter columns").fill("llm_request_hash")
    expect(page.get_by_text("ledger key of the request", exact=False).first).to_be_visible()
    page.get_by_placeholder("Filter columns").fill("llm_cached")
    expect(page.get_by_text("true when the ledger answered", exact=False).first).to_be_visible()


@pytest.mark.timeout(120)
def test_sensors_and_schedule_say_whether_they_run(dagster_ui: DagsterUI) -> None:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    repository = dagster_ui.graphql(AUTOMATION, {"selector": selector})["repositoryOrError"]
    assert repository["__typename"] == "Repository", repository
    sensors = {s["name"]: s for s in repository["sensors"]}
    schedules = {s["name"]: s for s in repository["schedules"]}

    schedule = schedules["nightly_enrichment_schedule"]
    inbox = sensors["partner_reviews_sensor"]
    for stopped, status in ((schedule, schedule["scheduleState"]), (inbox, inbox["sensorState"])):
        assert status["status"] == "STOPPED"
        assert "Stopped until turned on in the UI (Automation" in stopped["description"]
    assert sensors["llm_failure_alerts"]["sensorState"]["status"] == "RUNNING"
