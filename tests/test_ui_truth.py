"""What the UI shows about the example code location is true (read from its definitions).

The Dagster UI renders these fields as they are: the kind badges, the description, the
lineage edges, the table schema's column descriptions, the jobs an asset belongs to, and the
descriptions and default status of sensors and schedules. The browser tests check a few of
them on screen; these check them all, quickly, on the definitions the code server loads.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from reviews_example.definitions import build_definitions
from reviews_example.pipeline import INSIGHT_TASK
from reviews_example.research import RESEARCH_TASK

from llm_assets.provenance import PROVENANCE_COLUMNS, QUARANTINE_COLUMNS

SIMULATOR = "http://127.0.0.1:8765/v1"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The example location as ``make ui`` loads it: the simulator on its usual port."""
    monkeypatch.setenv("LLM_ASSETS_BASE_URL", SIMULATOR)
    monkeypatch.setenv("LLM_ASSETS_MODEL", "sim-small")
    definitions = build_definitions("local")
    dg.Definitions.validate_loadable(definitions)
    return definitions


def _node(defs: dg.Definitions, key: str) -> Any:
    return defs.resolve_asset_graph().get(dg.AssetKey(key))


def test_planner_asset_names_the_endpoint_and_model_it_is_sent_to(defs: dg.Definitions) -> None:
    research, insights = _node(defs, "review_research"), _node(defs, "review_insights")
    assert set(research.kinds) == {"simulator", "pandas"} == set(insights.kinds)

    description = research.description
    assert "**Model:** `sim-small` · **Endpoint:** `simulator`" in description
    for shown in ("`product_rating_stats`", "`similar_complaints`", "day: {day}"):
        assert shown in description  # tools and the planner prompt
    assert RESEARCH_TASK.user_prompt in description and RESEARCH_TASK.system_prompt in description
    assert research.code_version in description


def test_planner_code_version_covers_the_resource_model(
    defs: dg.Definitions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_ASSETS_MODEL", "sim-large")
    other = build_definitions("local")
    before, after = _node(defs, "review_research"), _node(other, "review_research")
    assert before.code_version != after.code_version
    metadata = after.metadata
    assert metadata["model"] == "sim-large (LLMResource.model)"


def test_quarantines_hang_off_the_table_whose_failed_rows_they_hold(defs: dg.Definitions) -> None:
    for table in ("review_insights", "daily_digest", "partner_review_insights"):
        quarantine = _node(defs, f"{table}_quarantine")
        assert quarantine.parent_keys == {dg.AssetKey(table)}
    assert _node(defs, "review_insights").parent_keys == {dg.AssetKey("raw_reviews")}


def test_every_column_of_llm_tables_is_described(defs: dg.Definitions) -> None:
    for key, expected in (
        ("review_insights", PROVENANCE_COLUMNS),
        ("review_research", PROVENANCE_COLUMNS),
        ("review_insights_quarantine", QUARANTINE_COLUMNS),
    ):
        schema = _node(defs, key).metadata["dagster/column_schema"]
        described = {c.name: c.description for c in schema.columns}
        assert set(expected) <= set(described), key
        assert all(described[name] for name in expected), (key, described)
    schema = _node(defs, "review_insights").metadata["dagster/column_schema"]
    (request_hash,) = [c for c in schema.columns if c.name == "llm_request_hash"]
    assert "python -m llm_assets trace" in str(request_hash.description)


def test_the_description_says_what_estimated_cost_assumes(defs: dg.Definitions) -> None:
    description = _node(defs, "review_insights").description
    assert INSIGHT_TASK.expected_output_tokens is not None
    assert (
        f"{INSIGHT_TASK.expected_output_tokens} output tokens per request "
        "(the task's `expected_output_tokens`)" in description
    )
    assert "`estimated_cost_usd` is the estimate made before sending" in description


def test_every_asset_of_the_example_has_a_named_job(defs: dg.Definitions) -> None:
    jobs = {
        name: defs.resolve_job_def(name).asset_layer.executable_asset_keys
        for name in ("nightly_enrichment", "critical_review_research", "llm_spend_refresh")
    }
    assert dg.AssetKey("review_insights_quarantine") in jobs["nightly_enrichment"]
    assert jobs["critical_review_research"] == {dg.AssetKey("review_research")}
    assert jobs["llm_spend_refresh"] == {dg.AssetKey("llm_spend")}


def test_sensors_and_schedule_say_whether_they_run_and_how_to_start_them(
    defs: dg.Definitions,
) -> None:
    schedule = defs.resolve_schedule_def("nightly_enrichment_schedule")
    inbox = defs.resolve_sensor_def("partner_reviews_sensor")
    alerts = defs.resolve_sensor_def("llm_failure_alerts")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert inbox.default_status == dg.DefaultSensorStatus.STOPPED
    for stopped in (schedule, inbox):
        assert stopped.description is not None
        assert "Stopped until turned on in the UI (Automation" in stopped.description
    assert "$LLM_ASSETS_INBOX_DIR" in str(inbox.description)
    # Watching failed runs costs nothing: it runs as soon as the daemon does.
    assert alerts.default_status == dg.DefaultSensorStatus.RUNNING
