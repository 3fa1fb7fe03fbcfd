"""No import cycle among the installed modules, imports inside functions included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def test_no_import_cycle_among_the_installed_modules() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "import_cycles.py")],
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert done.stdout.rstrip().endswith(" 0 import cycle(s)")


def test_the_check_sees_a_cycle_closed_inside_a_function(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "tools"))
    try:
        import import_cycles
    finally:
        sys.path.remove(str(REPO_ROOT / "tools"))
    root = tmp_path
    package = root / "llm_assets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from llm_assets.b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from llm_assets import c\n"
        "def g():\n    from llm_assets import a  # deferred, still a cycle\n    return a\n"
    )
    (package / "c.py").write_text("from . import b\n")
    for folder in ("resources", "sensors"):
        (root / folder).mkdir()
    modules = import_cycles.installed_modules(root)
    found = import_cycles.cycles(import_cycles.edges(modules))
    assert found == [["llm_assets.a", "llm_assets.b"]]  # c -> b only: TYPE_CHECKING skipped
