"""Code versions cover the model actually sent; the quarantine follows its table."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from llm_assets import llm_asset, rematerialize_on_new_version, resolve_model_versions
from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT, make_resources
from tests.test_llm_asset import ROWS, make_task, source_asset


def _defs(assets: list[dg.AssetsDefinition], resources: dict[str, Any]) -> dg.Definitions:
    return resolve_model_versions(dg.Definitions(assets=assets, resources=resources))


def test_changing_the_resource_model_changes_the_code_version_and_marks_stale(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    source = source_asset(ROWS)
    asset = llm_asset(make_task(), upstream=source)
    small = make_resources(simulator, tmp_path, model="sim-small")
    large = make_resources(simulator, tmp_path, model="sim-large")
    key = dg.AssetKey("label")

    def version(resources: dict[str, Any]) -> str | None:
        spec = _defs([source, asset], resources).resolve_assets_def(key).specs_by_key[key]
        return spec.code_version

    assert version(small) != version(large)
    assert version(small) == make_task().version_for("sim-small")
    job = _defs([source, asset], small).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(partition_key="eu", instance=sqlite_instance)
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet")
    assert set(table["llm_task_version"]) == {make_task().version_for("sim-small")}

    def status(resources: dict[str, Any]) -> StaleStatus:
        graph = _defs([source, asset], resources).resolve_asset_graph()
        resolver = CachingStaleStatusResolver(
            sqlite_instance, graph, LoadingContextForTest(sqlite_instance)
        )
        return resolver.get_status(key, "eu")

    assert status(small) == StaleStatus.FRESH
    assert status(large) == StaleStatus.STALE


def test_a_task_with_its_own_model_keeps_its_version(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    source = source_asset(ROWS)
    task = make_task(model="sim-large")
    asset = llm_asset(task, upstream=source)
    resources = make_resources(simulator, tmp_path, model="sim-small")
    spec = _defs([source, asset], resources).resolve_assets_def("label").specs_by_key
    assert spec[dg.AssetKey("label")].code_version == task.version


def test_unresolved_version_warns_in_the_run_log(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    source = source_asset(ROWS)
    result = dg.materialize(
        [source, llm_asset(make_task(), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
    )
    assert result.success
    messages = [r.user_message for r in sqlite_instance.all_logs(result.run_id)]
    assert any("resolve_model_versions" in m for m in messages)


def test_selecting_only_the_table_still_writes_its_quarantine(
    sqlite_instance: dg.DagsterInstance,
    resources: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [*ROWS, {"id": 99, "text": "broken [[sim:invalid_json]]"}]
    source = source_asset(rows)
    asset = llm_asset(make_task(repair_attempts=0), upstream=source)
    assert dg.materialize(
        [source], partition_key="eu", resources=resources, instance=sqlite_instance
    ).success
    # Writing the quarantine uses the step's resources and instance: an ephemeral instance
    # started there would outlive the step and leave its storage as the process's current one.
    ephemeral: list[dg.DagsterInstance] = []
    start_ephemeral = dg.DagsterInstance.ephemeral

    def counted(*args: Any, **kwargs: Any) -> dg.DagsterInstance:
        ephemeral.append(start_ephemeral(*args, **kwargs))
        return ephemeral[-1]

    monkeypatch.setattr(dg.DagsterInstance, "ephemeral", counted)
    result = dg.materialize(
        [source, asset],
        selection=["label"],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
    )
    assert result.success
    assert ephemeral == []
    quarantine = pd.read_parquet(tmp_path / "data" / "label_quarantine" / "eu.parquet")
    assert quarantine["id"].tolist() == [99]
    event = sqlite_instance.get_latest_materialization_event(dg.AssetKey("label_quarantine"))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == "eu"
    assert event.asset_materialization.metadata["rows"].value == 1


@pytest.mark.timeout(300)
def test_cli_select_only_the_table_materializes_the_quarantine(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "DAGSTER_HOME": str(home),
        "LLM_ASSETS_BASE_URL": simulator.base_url,
        "LLM_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "LLM_ASSETS_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "PATH": "/usr/bin:/bin",
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    for selection in ("raw_reviews", "review_insights"):
        proc = subprocess.run(
            [dagster, "asset", "materialize", "-m", "reviews_example.definitions",
             "--select", selection, "--partition", "2026-11-02"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    quarantine = tmp_path / "data" / "review_insights_quarantine" / "2026-11-02.parquet"
    assert quarantine.exists()
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_materialized_partitions(dg.AssetKey("review_insights_quarantine")) == {
        "2026-11-02"
    }


def test_a_new_version_rematerializes_recent_partitions_once(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    days = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    @dg.asset(name="texts", partitions_def=days)
    def source() -> pd.DataFrame:
        return pd.DataFrame(ROWS)

    def build(task_prompt: str) -> list[dg.AssetsDefinition]:
        asset = llm_asset(
            make_task(user_prompt=task_prompt),
            upstream=source,
            automation_condition=rematerialize_on_new_version(dt.timedelta(days=7)),
        )
        return [source, asset]

    for day in ("2026-11-02", "2026-11-20", "2026-11-23"):
        result = dg.materialize(
            build("Text: {text}"), partition_key=day, resources=resources,
            instance=sqlite_instance,
        )  # fmt: skip
        assert result.success
    now = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)

    def requested(assets: list[dg.AssetsDefinition], cursor: Any) -> tuple[set[str], Any]:
        evaluation = dg.evaluate_automation_conditions(
            defs=dg.Definitions(assets=assets, resources=resources),
            instance=sqlite_instance,
            cursor=cursor,
            evaluation_time=now,
        )
        keys: set[str] = set()
        for result in evaluation.results:
            if result.key == dg.AssetKey("label"):
                keys |= set(result.true_subset.expensively_compute_partition_keys())
        return keys, evaluation.cursor

    same, cursor = requested(build("Text: {text}"), None)
    assert same == set()
    changed, cursor = requested(build("Classify: {text}"), cursor)
    assert changed == {"2026-11-20", "2026-11-23"}  # inside the week, and materialized
    again, _ = requested(build("Classify: {text}"), cursor)
    assert again == set()
