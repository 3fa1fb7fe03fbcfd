"""``python -m llm_assets trace`` on a user's own code location, loaded like ``dagster`` does.

A small project in ``tmp_path`` (not the bundled example) defines an ``llm_asset`` with its own
resource keys and imports a helper from a folder that only its ``working_directory`` puts on
``sys.path``. It is materialized once against the in-process simulator; the command line then
traces a row in a process of its own (``tests/forked.py``), found through ``-f``, ``-w`` and the
instance lookup.
"""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets.__main__ import main
from llm_assets.simulator import SimulatorServer
from llm_assets.trace import trace_row
from tests.forked import LLM_ASSETS_MAIN, Finished, run

NO_INSTANCE = (
    "DAGSTER_HOME is not set and ./.dagster_home does not exist: "
    "export DAGSTER_HOME=<folder of the instance that materialized the asset>"
)

PIPELINE = '''
"""A user's own pipeline: capitals of countries, one LLM call per country."""

import os
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from capital_prompts import SYSTEM_PROMPT  # found through the location's working directory
from llm_assets import LLMTask, llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager

HERE = Path(__file__).resolve().parent
REGIONS = dg.StaticPartitionsDefinition(["europe", "asia"])
COUNTRIES = {
    "europe": ["France", "Spain", "Italy"],
    "asia": ["Japan", "Nepal"],
}


class Capital(BaseModel):
    city: str


@dg.asset(
    partitions_def=REGIONS,
    io_manager_key="parquet",
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def countries(context: dg.AssetExecutionContext) -> pd.DataFrame:
    names = COUNTRIES[context.partition_key]
    return pd.DataFrame(
        {"country_id": [f"{context.partition_key}-{i}" for i in range(len(names))],
         "country": names}
    )


capitals = llm_asset(
    LLMTask(
        name="capitals",
        system_prompt=SYSTEM_PROMPT,
        user_prompt="What is the capital of {country}?",
        output_schema=Capital,
        id_column="country_id",
    ),
    upstream=countries,
    io_manager_key="parquet",
    ledger_resource_key="answers",
)

defs = dg.Definitions(
    assets=[countries, capitals],
    resources={
        "llm": LLMResource(
            base_url=os.environ.get("CAPITALS_LLM_URL", "http://127.0.0.1:9/v1"),
            api_key="sk-capitals-test",
            model="sim-small",
            retry_backoff_s=0.01,
        ),
        "answers": ResponseLedger(backend="sqlite", sqlite_path=str(HERE / "ledger.sqlite")),
        "parquet": ParquetIOManager(base_dir=str(HERE / "data")),
    },
)
'''

WORKSPACE = """
load_from:
  - python_file:
      relative_path: pipelines/capitals.py
      working_directory: lib
      location_name: capitals
  - python_module:
      module_name: reviews_example.definitions
      location_name: example
"""


@dataclass
class Project:
    root: Path
    home: Path
    run_id: str
    row: dict[str, Any]


def _load_user_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("user_capitals_pipeline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, _simulator_server: SimulatorServer
) -> Iterator[Project]:
    """The user's project, with partition ``europe`` materialized in ``<root>/.dagster_home``."""
    root = tmp_path_factory.mktemp("capitals_project")
    (root / "pipelines").mkdir()
    (root / "pipelines" / "capitals.py").write_text(PIPELINE)
    (root / "lib").mkdir()
    (root / "lib" / "capital_prompts.py").write_text('SYSTEM_PROMPT = "You know geography."\n')
    (root / "workspace.yaml").write_text(WORKSPACE)
    home = root / ".dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPITALS_LLM_URL", _simulator_server.base_url)
        patch.syspath_prepend(str(root / "lib"))
        module = _load_user_module(root / "pipelines" / "capitals.py")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            [module.countries, module.capitals],
            partition_key="europe",
            resources=module.defs.resources,
            instance=instance,
        )
    assert result.success
    table = pd.read_parquet(root / "pipelines" / "data" / "capitals" / "europe.parquet")
    row = table[table["country_id"] == "europe-1"].iloc[0].to_dict()
    assert row["llm_status"] == "ok"
    yield Project(root=root, home=home, run_id=result.run_id, row=row)


def _env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["DAGSTER_TELEMETRY_DISABLED"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _trace(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Finished:
    """``python -m llm_assets trace ARGS`` in ``cwd``, as a program of its own."""
    return run(
        LLM_ASSETS_MAIN,
        ["trace", *args],
        env=env if env is not None else _env(),
        cwd=cwd,
        logs=cwd.parent / f"trace-{uuid.uuid4().hex[:8]}",
    )


def _assert_traced(out: str, project: Project) -> None:
    assert "status:           ok" in out
    assert json.dumps(project.row["city"]) in out  # the row's answer
    assert "model:            sim-small" in out
    assert f"materialized by:  {project.run_id} (SUCCESS)" in out
    assert f"paid by run:      {project.run_id}" in out
    assert "[user] What is the capital of Spain?" in out
    assert "countries partition=europe" in out and '"country": "Spain"' in out


def test_trace_a_python_file_with_dagster_home_set(project: Project) -> None:
    shown = _trace(
        project.root,
        "capitals",
        "--partition",
        "europe",
        "--row",
        "europe-1",
        "-f",
        "pipelines/capitals.py",
        "-d",
        "lib",
        env=_env(DAGSTER_HOME=str(project.home)),
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    _assert_traced(shown.stdout, project)
    assert "Traceback" not in shown.stderr


def test_trace_a_workspace_location_with_the_local_dagster_home(project: Project) -> None:
    args = ["capitals", "--partition", "europe", "--row", "europe-1", "--json"]
    # DAGSTER_HOME is unset: the instance is ./.dagster_home, and trace says so.
    shown = _trace(project.root, *args, "-w", "workspace.yaml", "--location", "capitals")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"using the instance in {project.home}" in shown.stderr
    traced = json.loads(shown.stdout)
    assert traced["output"] == {"city": project.row["city"]}
    assert traced["model"] == "sim-small"
    assert traced["materialized_by_run_id"] == traced["paid_by_run_id"] == project.run_id
    assert traced["upstream"][0]["input_row"]["country"] == "Spain"

    # No option: ./workspace.yaml is used, and it has two locations.
    several = _trace(project.root, *args)
    assert several.returncode == 2 and "Traceback" not in several.stderr
    assert "2 code locations (capitals, example); pick one with --location NAME" in several.stderr


def test_trace_without_an_instance_says_what_to_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In this process: the instance is looked up before any code location is loaded.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    status = main(["trace", "capitals", "--row", "x", "-m", "reviews_example.definitions"])
    shown = capsys.readouterr()
    assert status == 2
    assert NO_INSTANCE in shown.err
    assert "Traceback" not in shown.err and shown.out == ""


def test_trace_of_an_unknown_row_names_existing_ids(project: Project) -> None:
    shown = _trace(
        project.root,
        "capitals",
        "--partition",
        "europe",
        "--row",
        "atlantis",
        "-f",
        "pipelines/capitals.py",
        "-d",
        "lib",
        env=_env(DAGSTER_HOME=str(project.home)),
    )
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert "no row with country_id='atlantis'" in shown.stderr
    assert "europe-0, europe-1, europe-2" in shown.stderr


@pytest.fixture
def user_defs(project: Project, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    monkeypatch.syspath_prepend(str(project.root / "lib"))
    return _load_user_module(project.root / "pipelines" / "capitals.py").defs


@pytest.mark.parametrize(
    ("asset", "partition", "message", "what_exists"),
    [
        ("nope", "europe", "no asset 'nope' in this code location", "LLM assets: capitals"),
        (
            "countries",
            "europe",
            "asset 'countries' is not an llm_asset",
            "LLM assets here: capitals",
        ),
        ("capitals", None, "asset 'capitals' is partitioned: give a partition", "first): europe"),
        ("capitals", "asia", "no output for asset 'capitals' partition 'asia'", "first): europe"),
    ],
)
def test_trace_row_errors_list_what_exists(
    project: Project,
    user_defs: dg.Definitions,
    asset: str,
    partition: str | None,
    message: str,
    what_exists: str,
) -> None:
    with (
        dg.DagsterInstance.from_config(str(project.home)) as instance,
        pytest.raises(KeyError) as raised,
    ):
        trace_row(user_defs, instance, asset, "europe-0", partition)
    assert message in raised.value.args[0]
    assert what_exists in raised.value.args[0]
