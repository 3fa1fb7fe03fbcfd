"""The development environment is locked: every dependency pinned, drift named."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
from lock_diff import pins

pytestmark = pytest.mark.timeout(60)
LOCK = REPO_ROOT / "constraints.txt"


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def test_every_dependency_pyproject_names_is_pinned_in_the_lock() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    named = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        named += [r for r in extra if not r.startswith("llm-assets")]
    locked = pins(LOCK)
    missing = [r for r in named if _normal(Requirement(r).name) not in locked]
    assert missing == []
    # Each pin is inside the range pyproject.toml gives users.
    outside = [
        f"{r}: locked {locked[_normal(Requirement(r).name)]}"
        for r in named
        if not Requirement(r).specifier.contains(locked[_normal(Requirement(r).name)])
    ]
    assert outside == []


def test_lock_diff_names_what_changed(tmp_path: Path) -> None:
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("openai==9.9.9\nbrand-new==1.0\n")
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nOpenAI==3.60.0\nold_one==2.0\n")
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "lock_diff.py"), str(lock), str(freeze)],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert out.splitlines() == [
        f"3 package(s) differ from {lock}:",
        "  brand-new: (not locked) -> 1.0",
        "  old-one: 2.0 -> (gone)",
        "  openai: 3.60.0 -> 9.9.9",
    ]
