"""One import namespace: the distribution installs ``llm_assets`` and nothing else at top level.

The example pipeline and its demo are a project of their own (``examples/reviews``, package
``reviews_example``): the wheel does not carry them and the library never imports them.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT

FOLDERS = {"llm_assets": "llm_assets", "resources": "llm_assets.resources",
           "sensors": "llm_assets.sensors"}  # fmt: skip


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, name in FOLDERS.items():
        for init in (REPO_ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO_ROOT / folder).parts
            found.add(".".join([name, *parts]))
    assert found == listed
    assert config["package-dir"] == {"llm_assets.resources": "resources",
                                     "llm_assets.sensors": "sensors"}  # fmt: skip


@pytest.mark.timeout(300)
def test_wheel_holds_only_the_llm_assets_namespace(tmp_path: Path) -> None:
    # From a copy of the sources: setuptools would pack whatever a build/ folder left behind.
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in FOLDERS:
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
         "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"llm_assets"}
    assert "llm_assets/resources/ledger/__init__.py" in names
    assert "llm_assets/sensors/__init__.py" in names
    assert "llm_assets/ui.py" in names  # the UI launcher is the library's, for any location
    example = [
        name
        for name in names
        if name.startswith(("llm_assets/example/", "reviews_example/"))
        or name in ("llm_assets/definitions.py", "llm_assets/demo.py")
    ]
    assert example == []


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_library_never_imports_the_example() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for folder in FOLDERS
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for module in sorted(_imported_modules(path))
        if module.split(".")[0] == "reviews_example"
        or module.startswith(("llm_assets.example", "llm_assets.definitions", "llm_assets.demo"))
    ]
    assert offenders == []


def _run(code: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.timeout(300)
def test_a_project_with_its_own_resources_and_sensors_materializes_an_llm_asset(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    (tmp_path / "resources.py").write_text("WHO = 'the user project'\n")
    (tmp_path / "sensors").mkdir()
    (tmp_path / "sensors" / "__init__.py").write_text("WHO = 'the user sensors'\n")
    proc = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import dagster as dg, pandas as pd
        from pydantic import BaseModel
        import llm_assets
        from llm_assets import LLMResource, LLMTask, ParquetIOManager, ResponseLedger, llm_asset
        import resources, sensors

        class Answer(BaseModel):
            label: str

        @dg.asset
        def notes() -> pd.DataFrame:
            return pd.DataFrame({{"id": [1, 2], "text": ["a note", "another note"]}})

        task = LLMTask(name="labels", user_prompt="{{text}}", output_schema=Answer,
                       id_column="id")
        result = dg.materialize(
            [notes, llm_asset(task, upstream=notes)],
            resources={{
                "llm": LLMResource(base_url={simulator.base_url!r}, api_key="k",
                                   model="sim-small"),
                "ledger": ResponseLedger(sqlite_path={str(tmp_path / "ledger.sqlite")!r}),
                "io_manager": ParquetIOManager(base_dir={str(tmp_path / "data")!r}),
            }},
        )
        assert result.success
        print(resources.WHO, "|", sensors.WHO, "|", llm_assets.resources.__name__)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the user project | the user sensors | llm_assets.resources" in proc.stdout
    assert (tmp_path / "data" / "labels.parquet").exists()


def test_the_library_imports_without_the_simulator_extra(tmp_path: Path) -> None:
    proc = _run(
        """
        import sys
        sys.modules["starlette"] = None  # as if the [simulator] extra were not installed
        sys.modules["uvicorn"] = None
        import llm_assets, llm_assets.resources, llm_assets.sensors, llm_assets.trace
        from llm_assets import LLMTask, llm_asset
        from llm_assets.resources import LLMResource, ParquetIOManager, ResponseLedger
        print("ok")
        """,
        tmp_path,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
