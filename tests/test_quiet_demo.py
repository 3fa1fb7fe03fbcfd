"""``make demo`` as a new user runs it: no warning they cannot act on, and a UI worth opening.

The demo runs in a fresh process (as ``make demo`` does) that turns Dagster's ``BetaWarning``
and ``PreviewWarning`` into errors before anything is imported: loading the example code
location or materializing it must not trip one. The ``filterwarnings`` of ``pyproject.toml``
hide these categories inside pytest, and the demo runs outside it, so they are not involved
here. Then what the UI reads from the instance is checked: ``llm_spend`` was
materialized by a named job, and the preview of ``review_insights`` is readable and says how
to trace a row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

PARTITION = "2026-11-01"
# The demo takes about 10 s alone; a loaded two-core machine may need many times that.
DEMO_TIMEOUT_S = 300

STRICT_DEMO = """
import sys
import warnings

import dagster as dg

for category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.simplefilter("error", category)

from reviews_example.demo import run_demo

sys.exit(run_demo(sys.argv[1]))
"""


def _latest(instance: dg.DagsterInstance, asset: str) -> dg.EventLogEntry:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, asset
    return event


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
def test_demo_trips_no_beta_or_preview_warning_and_leaves_pages_worth_reading(
    tmp_path: Path,
) -> None:
    home = tmp_path / "dagster_home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LLM_ASSETS_") and key != "PYTHONWARNINGS"
    }
    env.update(DAGSTER_HOME=str(home), LLM_ASSETS_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-c", STRICT_DEMO, PARTITION],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    for category in ("BetaWarning", "PreviewWarning"):
        assert category not in done.stderr, done.stderr[-4000:]
    assert ": SUCCESS" in done.stdout and "review_insights  rows=" in done.stdout

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        # llm_spend has figures to show, from a job the partition page can name.
        spend = _latest(instance, "llm_spend")
        spend_run = instance.get_run_by_id(spend.run_id)
        assert spend_run is not None and spend_run.job_name == "llm_spend_refresh"
        quarantine = _latest(instance, "review_insights_quarantine")
        quarantine_run = instance.get_run_by_id(quarantine.run_id)
        assert quarantine_run is not None and quarantine_run.job_name == "nightly_enrichment"

        # The preview reads like the table, not like Python, and says how to trace a row.
        metadata = _latest(instance, "review_insights").asset_materialization.metadata  # type: ignore[union-attr]
        preview = str(metadata["preview"].value)
        assert "['" not in preview and "<NA>" not in preview, preview
        assert (
            f"`python -m llm_assets trace review_insights --partition {PARTITION} "
            f"--row {PARTITION}-0000`" in preview
        ), preview
        assert "; " in preview.splitlines()[2]  # the first row's topics, joined
    finally:
        instance.dispose()
