"""`dg check defs` and `dg list defs` on the example project, and on YAML that must fail.

Each case is a copy of ``examples/yaml_component`` in ``tmp_path`` (one file edited for the
invalid ones) checked by the real ``dg`` of this environment in a subprocess: one error of
Dagster's YAML validation and one the component raises while the definitions load. The
commands are started together and awaited by the tests. Errors found by the component in
Python (every schema and model-path error, field values) are tested in-process in
test_component.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "yaml_component"
DG = Path(sys.executable).with_name("dg")
DEFS = Path("yaml_reviews") / "defs"
REPLIES = DEFS / "review_replies" / "defs.yaml"
TIMEOUT_S = 240

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(TIMEOUT_S + 60),
    pytest.mark.skipif(
        not DG.exists(), reason=f"no {DG}: install the dev extra (pip install -e '.[dev]')"
    ),
]


@dataclass(frozen=True)
class Case:
    """A project to run ``dg`` in: the example with one line of one file replaced."""

    args: tuple[str, ...]
    file: Path | None = None
    old: str = ""
    new: str = ""


CASES = {
    "check": Case(("check", "defs")),
    "list": Case(("list", "defs", "--json")),
    "unknown_field": Case(
        ("check", "defs"), REPLIES, "  max_cost_usd: 2.0", "  max_budget_usd: 2.0"
    ),
    "missing_upstream": Case(
        ("check", "defs"), REPLIES, "  upstream: review_insights", "  upstream: review_insight"
    ),
}


@dataclass
class Outcome:
    """How one ``dg`` command ended."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _project(root: Path, case: Case) -> Path:
    project = root / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "data"))
    if case.file is not None:
        path = project / case.file
        text = path.read_text()
        assert case.old in text, f"{case.old!r} not in {case.file}: update the test"
        path.write_text(text.replace(case.old, case.new))
    return project


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    """Starts every case's ``dg`` command at once and waits for them all."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    running = {}
    for name, case in CASES.items():
        project = _project(tmp_path_factory.mktemp(name), case)
        running[name] = subprocess.Popen(
            [str(DG), *case.args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        ended = {}
        for name, process in running.items():
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            ended[name] = Outcome(process.returncode, stdout, stderr)
        yield ended
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_dg_check_defs_passes_on_the_example(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["check"]
    assert outcome.returncode == 0, outcome.output
    assert "All component YAML validated successfully." in outcome.output
    assert "All definitions loaded successfully." in outcome.output


def test_dg_list_defs_shows_the_components_assets(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["list"]
    assert outcome.returncode == 0, outcome.output
    listed = json.loads(outcome.stdout)
    assets = {asset["asset_key"]: asset for asset in listed["assets"]}
    assert set(assets) == {
        "raw_reviews",
        "review_insights",
        "review_insights_quarantine",
        "review_replies",
        "review_replies_quarantine",
    }
    assert assets["review_insights"]["dependency_keys"] == ["raw_reviews"]
    assert assets["review_replies"]["dependency_keys"] == ["review_insights"]
    assert assets["review_replies"]["group_name"] == "review_enrichment"
    assert "needs a reply" in assets["review_replies"]["description"]
    checks = {check["key"] for check in listed["asset_checks"]}
    assert checks == {"review_insights:failure_rate", "review_replies:failure_rate"}
    assert {r["name"] for r in listed["resources"]} >= {"llm", "ledger", "io_manager"}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_field", ["max_budget_usd", "Additional properties are not allowed"]),
        (
            "missing_upstream",
            [
                "LLMAssetComponent 'review_replies' (yaml_reviews/defs/review_replies): "
                "field `upstream`: no asset 'review_insight' is defined in this project "
                "(assets: raw_reviews, review_insights)"
            ],
        ),
    ],
)
def test_dg_check_defs_fails_naming_the_field(
    outcomes: dict[str, Outcome], case: str, expected: list[str]
) -> None:
    outcome = outcomes[case]
    assert outcome.returncode != 0, outcome.output
    assert "All definitions loaded successfully." not in outcome.output
    for text in expected:
        assert text in outcome.output, outcome.output[-3000:]
