"""The ``dagster`` CLI on the repository's workspace.

Runs launched through the webserver's GraphQL API (what the launchpad and the Materialize
button send) are in ``tests/browser/test_launchpad.py``, on the browser tests' ``dagster dev``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def test_definitions_validate_passes_on_workspace(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        LLM_ASSETS_BASE_URL=simulator.base_url,
        LLM_ASSETS_DATA_DIR=str(tmp_path / "data"),
        LLM_ASSETS_LEDGER_PATH=str(tmp_path / "ledger.sqlite"),
        LLM_ASSETS_ENV="local",
    )
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
