"""A person decides the rows a review gate flagged, on the review page in headless Chromium.

End to end on the example's Postgres instance under ``dagster dev`` (webserver and daemon):
the gate ``review_insights`` flags rows of a day and its run ends; nothing reviewed is
materialized; a reviewer signs in to the review page the gate's ``review_url`` names,
approves, rejects and edits rows (an edit that breaks the schema is refused on the page with
nothing recorded); then the daemon's ``insight_review_sensor`` launches the reviewed run by
itself, and its tables hold exactly what was decided. The page's picture in the README is
taken here (``LLM_ASSETS_DOCS_SCREENSHOTS=1`` refreshes ``docs/img/review_page.png``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.error
import urllib.request
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from tests.browser.conftest import REVIEW_PARTITION
from tests.browser.support import RUN_TIMEOUT_S, DagsterUI, artifacts_dir
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]

GATE = "review_insights"
REVIEWED = "review_insights_reviewed"
QUARANTINE = "review_insights_reviewed_quarantine"
SENSOR = "insight_review_sensor"
#: The sensor ticks every 30 s; on a loaded machine the daemon may start a tick late.
SENSOR_WAIT_S = 180.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for_page(url: str, timeout_s: float = 120.0) -> None:
    """Waits until the review page answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with _OPENER.open(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the review page did not answer on {url} in {timeout_s:.0f} s")


def sensor_runs(ui: DagsterUI) -> list[dg.DagsterRun]:
    """The runs the review sensor launched for the partition."""
    runs = ui.instance.get_runs(
        filters=dg.RunsFilter(
            tags={"dagster/sensor_name": SENSOR, "dagster/partition": REVIEW_PARTITION}
        )
    )
    return list(runs)


def table(ui: DagsterUI, asset: str) -> pd.DataFrame:
    return pd.read_parquet(ui.data_dir / asset / f"{REVIEW_PARTITION}.parquet")


def first_card(page: Any) -> tuple[Any, str]:
    """The first pending row on the page and its row id."""
    card = page.locator("section.card").first
    return card, str(card.get_attribute("data-row"))


@pytest.mark.timeout(900)
def test_a_reviewer_decides_on_the_page_and_the_sensor_launches_the_reviewed_run(
    page: Any, dagster_ui: DagsterUI
) -> None:
    from playwright.sync_api import expect

    # The gate's run, launched as the launchpad does: it flags rows, opens the review and ends.
    run_id = dagster_ui.launch(GATE, REVIEW_PARTITION, {})
    assert dagster_ui.wait_for_run(run_id) == dg.DagsterRunStatus.SUCCESS
    metadata = dagster_ui.latest_materialization(GATE, REVIEW_PARTITION).asset_materialization
    assert metadata is not None
    pending = int(metadata.metadata["review_pending"].value)  # type: ignore[arg-type]
    assert pending >= 3, f"partition {REVIEW_PARTITION} flags {pending} rows; the test needs 3"
    url = str(metadata.metadata["review_url"].value)
    assert url == f"{dagster_ui.review_url}/review/{GATE}/{REVIEW_PARTITION}"
    gate = table(dagster_ui, GATE)
    assert (gate["review_status"] == "pending").sum() == pending
    not_required = set(gate.loc[gate["review_status"] == "not_required", "review_id"])
    assert not_required, "every row flagged: nothing would show the not-required rows flow"

    # Nothing reviewed flows until people decide, and no worker waits meanwhile.
    reviewed = dagster_ui.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(REVIEWED), asset_partitions=[REVIEW_PARTITION]),
        limit=1,
    ).records
    assert reviewed == []
    assert sensor_runs(dagster_ui) == []

    # Signed out, the page shows the rows but no buttons.
    wait_for_page(dagster_ui.review_url)
    page.goto(url)
    expect(page.get_by_role("heading", name=f"{GATE} · {REVIEW_PARTITION}")).to_be_visible()
    expect(page.locator("section.card")).to_have_count(pending)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    page.get_by_role("link", name="Sign in to decide").click()
    page.get_by_label("Your name").fill("Ana Reviewer")
    page.get_by_label("Review token").fill(dagster_ui.review_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url)
    expect(page.get_by_text("signed in as")).to_contain_text("Ana Reviewer")
    # The README's picture: saved among the browser artifacts, and with
    # LLM_ASSETS_DOCS_SCREENSHOTS=1 copied to docs/img/review_page.png.
    shot = artifacts_dir() / "review_page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False, timeout=30_000)
    if os.environ.get("LLM_ASSETS_DOCS_SCREENSHOTS") == "1":
        shutil.copy(shot, REPO_ROOT / "docs" / "img" / "review_page.png")

    # The daemon's sensor announces the waiting rows, with the page's link, where the example's
    # alerts go (the daemon's log without a Slack webhook), and launches nothing yet.
    announced = re.compile(
        rf"^{pending} rows wait for review: {GATE}, partition {REVIEW_PARTITION} "
        rf"\({pending} flagged\); decide on {re.escape(url)}$",
        re.MULTILINE,
    )
    deadline = time.monotonic() + SENSOR_WAIT_S
    while not announced.search(dagster_ui.log_path.read_text()):
        assert time.monotonic() < deadline, f"no announcement in {dagster_ui.log_path}"
        time.sleep(1.0)
    assert sensor_runs(dagster_ui) == []

    # Approve the first row.
    card, approved = first_card(page)
    card.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: approve:")
    expect(page.locator(f"section.card[data-row='{approved}']")).to_have_count(0)

    # Reject the next one, with the reason kept in the quarantine.
    card, rejected = first_card(page)
    card.get_by_placeholder("why it must not flow on").fill("mentions a customer's address")
    card.get_by_role("button", name="Reject").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: reject:")

    # An edit that breaks the task's schema (no topic) is refused on the page: nothing recorded.
    card, edited = first_card(page)
    card.locator("textarea[name='field:topics']").fill("")
    card.get_by_role("button", name="Save edit").click()
    expect(page.get_by_role("alert")).to_contain_text("Not recorded:")
    expect(page.get_by_role("alert")).to_contain_text("topics")
    card = page.locator(f"section.card[data-row='{edited}']")
    expect(card.locator(".status.pending").first).to_be_visible()
    card.locator("select[name='field:sentiment']").select_option("mixed")
    card.locator("textarea[name='field:topics']").fill("delivery\npackaging")
    card.locator("input[name='field:summary']").fill("Corrected by a reviewer.")
    card.get_by_role("button", name="Save edit").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: edit:")

    # The rest are approved one by one; the sensor waits for the last.
    for _ in range(pending - 3):
        before = page.locator("section.card").count()
        assert sensor_runs(dagster_ui) == []
        page.locator("section.card").first.get_by_role("button", name="Approve").click()
        expect(page.locator("section.card")).to_have_count(before - 1)
    expect(page.get_by_text("No pending rows on this page.")).to_be_visible()

    # The daemon's sensor launches the reviewed run by itself, once.
    deadline = time.monotonic() + SENSOR_WAIT_S
    while not (runs := sensor_runs(dagster_ui)) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert len(runs) == 1, f"the sensor launched {len(runs)} runs; see {dagster_ui.log_path}"
    (run,) = runs
    assert run.tags["llm_assets/review_trigger"] == "decided"
    assert dagster_ui.wait_for_run(run.run_id, RUN_TIMEOUT_S) == dg.DagsterRunStatus.SUCCESS
    assert len(sensor_runs(dagster_ui)) == 1  # and still one, ticks later
    assert len(announced.findall(dagster_ui.log_path.read_text())) == 1  # announced once

    # Exactly the approved and edited rows join the not-required ones, the edit applied.
    out = table(dagster_ui, REVIEWED).set_index("review_id")
    flagged_ids = set(gate["review_id"]) - not_required
    assert set(out.index) == not_required | (flagged_ids - {rejected})
    assert out.loc[approved, "review_status"] == "approved"
    assert out.loc[approved, "reviewed_by"] == "Ana Reviewer"
    fixed = out.loc[edited]
    assert fixed["review_status"] == "edited"
    assert (fixed["sentiment"], list(fixed["topics"]), fixed["summary"]) == (
        "mixed", ["delivery", "packaging"], "Corrected by a reviewer.",
    )  # fmt: skip
    quarantined = table(dagster_ui, QUARANTINE)
    assert list(quarantined["review_id"]) == [rejected]
    assert quarantined["reason"].tolist() == ["mentions a customer's address"]
    assert quarantined["rejected_by"].tolist() == ["Ana Reviewer"]
