"""``make demo`` as a new user runs it: no warning they cannot act on, pages worth reading, and
a ``trace`` command that works when pasted into a fresh shell.

The demo runs once for the module, in a fresh process and an empty folder with neither
``DAGSTER_HOME`` nor any ``LLM_ASSETS_`` setting (as ``make demo`` does on a new machine), and
with Dagster's ``BetaWarning`` and ``PreviewWarning`` turned into errors before anything is
imported: loading the example code location or materializing it must not trip one. The
``filterwarnings`` of ``pyproject.toml`` hide these categories inside pytest, and the demo runs
outside it, so they are not involved here. Then what the UI reads from the instance is checked,
and the command the demo printed is run by a shell in the same folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

PARTITION = "2026-11-01"
# The demo takes about 10 s alone; a loaded two-core machine may need many times that.
DEMO_TIMEOUT_S = 300

#: ``python -m reviews_example demo …`` with the two warning categories made errors first.
STRICT_DEMO = """
import sys
import warnings

import dagster as dg

for category in (dg.BetaWarning, dg.PreviewWarning):
    warnings.simplefilter("error", category)

from reviews_example.__main__ import main

sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Demo:
    """The folder the demo ran in, the environment it had, and what it printed."""

    workdir: Path
    env: dict[str, str]
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    workdir = tmp_path_factory.mktemp("demo")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LLM_ASSETS_") and key not in ("PYTHONWARNINGS", "DAGSTER_HOME")
    }
    env.update(LLM_ASSETS_OFFLINE="1", DAGSTER_TELEMETRY_DISABLED="1")
    done = subprocess.run(
        [sys.executable, "-c", STRICT_DEMO, "demo", "--partition", PARTITION],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    return Demo(workdir, env, done)


@pytest.fixture
def instance(demo: Demo) -> Iterator[dg.DagsterInstance]:
    """The instance the demo made: ``./.dagster_home`` of the folder it ran in."""
    with dg.DagsterInstance.from_config(str(demo.workdir / ".dagster_home")) as opened:
        yield opened


def _latest(instance: dg.DagsterInstance, asset: str) -> dg.EventLogEntry:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, asset
    return event


@pytest.mark.timeout(DEMO_TIMEOUT_S + 60)
def test_demo_trips_no_beta_or_preview_warning_and_leaves_pages_worth_reading(
    demo: Demo, instance: dg.DagsterInstance
) -> None:
    for category in ("BetaWarning", "PreviewWarning"):
        assert category not in demo.done.stderr, demo.done.stderr[-4000:]
    assert ": SUCCESS" in demo.done.stdout and "review_insights  rows=" in demo.done.stdout

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


@pytest.mark.timeout(DEMO_TIMEOUT_S + 240)
def test_the_command_the_demo_prints_works_in_a_fresh_shell(demo: Demo) -> None:
    (printed,) = [
        line for line in demo.done.stdout.splitlines() if line.startswith("Trace a row: ")
    ]
    command = printed.removeprefix("Trace a row: ")
    shown = subprocess.run(
        command,
        shell=True,
        cwd=demo.workdir,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shown.returncode == 0, command + "\n" + shown.stderr[-3000:]
    assert f"row: {PARTITION}-0000" in shown.stdout and "status:           ok" in shown.stdout
