"""``llm_asset`` on small tables: versions and staleness, bad input, provider errors."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest
from pydantic import BaseModel

from llm_assets import LLMTask, llm_asset, planned_asset
from llm_assets.resources.errors import AuthenticationFailed, MissingColumnsError, UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.simulator import SimulatorServer
from tests import planner_support
from tests.conftest import TEST_API_KEY, make_resources

REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])


class Label(BaseModel):
    label: Literal["positive", "negative"]
    reason: str


def make_task(**overrides: Any) -> LLMTask:
    spec: dict[str, Any] = {
        "name": "label",
        "system_prompt": "Label the sentiment.",
        "user_prompt": "Text: {text}",
        "output_schema": Label,
        "id_column": "id",
    }
    spec.update(overrides)
    return LLMTask(**spec)


def source_asset(rows: list[dict[str, Any]], name: str = "texts") -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=REGIONS)
    def _source() -> pd.DataFrame:
        return pd.DataFrame(rows)

    return _source


ROWS = [{"id": i, "text": f"review number {i} says it is fine"} for i in range(5)]


def _run(
    assets: list[dg.AssetsDefinition],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    partition: str = "eu",
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=partition,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def _step_error(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "expected a step failure"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def test_prompt_change_changes_code_version_and_marks_stale(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    source = source_asset(ROWS)
    v1 = llm_asset(make_task(), upstream=source)
    v2 = llm_asset(make_task(user_prompt="Classify this text: {text}"), upstream=source)
    key = dg.AssetKey("label")
    assert v1.code_versions_by_key[key] != v2.code_versions_by_key[key]
    assert v1.code_versions_by_key[key] == make_task().version

    assert _run([source, v1], resources, sqlite_instance).success

    def status(asset: dg.AssetsDefinition) -> StaleStatus:
        graph = dg.Definitions(assets=[source, asset], resources=resources).resolve_asset_graph()
        resolver = CachingStaleStatusResolver(
            sqlite_instance, graph, LoadingContextForTest(sqlite_instance)
        )
        return resolver.get_status(dg.AssetKey("label"), "eu")

    assert status(v1) == StaleStatus.FRESH
    assert status(v2) == StaleStatus.STALE


def test_missing_column_fails_before_any_request(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    source = source_asset([{"id": 1, "body": "x", "stars": 5}])
    asset = llm_asset(make_task(), upstream=source)
    result = _run([source, asset], resources, sqlite_instance)
    assert not result.success
    message = _step_error(result)
    assert "MissingColumnsError" in message
    assert "'text'" in message and "columns present: id, body, stars" in message
    assert "columns={'text':" in message
    assert simulator.stats()["requests_total"] == 0


def test_missing_column_error_pickles_with_its_message() -> None:
    import pickle

    err = MissingColumnsError("a", ["text"], ["id"], "texts")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.missing == ["text"]


def test_empty_partition_gives_empty_table_and_no_requests(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    @dg.asset(name="texts", partitions_def=REGIONS)
    def empty_source() -> pd.DataFrame:
        return pd.DataFrame(
            {"id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype="str")}
        )

    asset = llm_asset(make_task(), upstream=empty_source)
    result = _run([empty_source, asset], resources, sqlite_instance)
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet")
    assert len(table) == 0
    assert {"id", "label", "reason", "llm_status", "llm_request_hash"} <= set(table.columns)
    assert simulator.stats()["requests_total"] == 0


def test_invalid_schema_answer_is_repaired_by_one_follow_up(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    rows = [*ROWS, {"id": 99, "text": "broken [[sim:invalid_json]]"}]
    source = source_asset(rows)
    result = _run([source, llm_asset(make_task(), upstream=source)], resources, sqlite_instance)
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet").set_index("id")
    assert (table["llm_status"] == "ok").all()
    assert table.loc[99, "llm_repairs"] == 1 and table.loc[0, "llm_repairs"] == 0
    assert table.loc[99, "llm_input_tokens"] > table.loc[0, "llm_input_tokens"]
    assert simulator.stats()["chat_completions"] == len(rows) + 1


def test_invalid_schema_answer_without_repairs_fails_only_that_row_and_is_quarantined(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    rows = [*ROWS, {"id": 99, "text": "broken [[sim:invalid_json]]"}]
    source = source_asset(rows)
    asset = llm_asset(make_task(repair_attempts=0), upstream=source)
    result = _run([source, asset], resources, sqlite_instance)
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet").set_index("id")
    assert len(table) == len(rows)
    bad = table.loc[99]
    assert bad["llm_status"] == "failed" and bad["llm_error_class"] == "invalid_schema"
    assert "does not match Label" in bad["llm_error"]
    assert pd.isna(bad["label"])
    assert (table.drop(index=99)["llm_status"] == "ok").all()
    (materialization,) = [
        m for m in result.asset_materializations_for_node("label") if m.asset_key.path == ["label"]
    ]
    meta = materialization.metadata
    assert meta["failed"].value == 1 and meta["ok"].value == len(ROWS)
    quarantine = pd.read_parquet(tmp_path / "data" / "label_quarantine" / "eu.parquet")
    assert quarantine["id"].tolist() == [99]
    assert quarantine["error_class"].tolist() == ["invalid_schema"]
    assert "[[sim:invalid_json]]" in quarantine["request"].iloc[0]
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["failure_rate"].value == round(1 / 6, 4)


def test_prompt_over_context_window_fails_that_row_without_sending(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
) -> None:
    rows = [{"id": 1, "text": "short"}, {"id": 2, "text": "word " * 20_000}]
    source = source_asset(rows)
    asset = llm_asset(make_task(), upstream=source)
    assert _run([source, asset], resources, sqlite_instance).success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet").set_index("id")
    assert table.loc[1, "llm_status"] == "ok"
    assert table.loc[2, "llm_error_class"] == "context_length_exceeded"
    assert "context window" in table.loc[2, "llm_error"]
    assert simulator.stats()["chat_requests"] == 1


def test_unauthorized_key_fails_step_at_once_without_retry_storm(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    simulator.configure(api_keys=["sk-the-right-key"])
    resources = make_resources(simulator, tmp_path, max_concurrency=4)
    rows = [{"id": i, "text": f"row {i}"} for i in range(200)]
    source = source_asset(rows)
    asset = llm_asset(make_task(), upstream=source)
    result = _run([source, asset], resources, sqlite_instance)
    assert not result.success
    message = _step_error(result)
    assert "AuthenticationFailed" in message and "API key" in message
    assert TEST_API_KEY not in message
    assert simulator.stats()["chat_requests"] <= 4


def test_insufficient_quota_fails_step_with_billing_message(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    simulator.configure(insufficient_quota=True)
    resources = make_resources(simulator, tmp_path, max_concurrency=4)
    source = source_asset([{"id": i, "text": f"row {i}"} for i in range(100)])
    asset = llm_asset(make_task(), upstream=source)
    result = _run([source, asset], resources, sqlite_instance)
    assert not result.success
    message = _step_error(result)
    assert "QuotaExhausted" in message and "credit" in message
    assert simulator.stats()["chat_requests"] <= 4


@pytest.mark.timeout(180)
def test_quota_running_out_mid_step_keeps_every_answer_already_paid(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    # Requests admitted before the quota ran out are answered (and paid) after their latency:
    # the step must wait for them and record them, not cancel them on the first quota error.
    simulator.configure(latency_ms=600)
    resources = make_resources(simulator, tmp_path, max_concurrency=8)
    source = source_asset([{"id": i, "text": f"row {i}"} for i in range(200)])
    asset = llm_asset(make_task(), upstream=source)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(_run, [source, asset], resources, sqlite_instance)
        deadline = time.monotonic() + 120
        while simulator.stats()["chat_completions"] < 16:
            assert time.monotonic() < deadline and not run.done(), "the step never got going"
            time.sleep(0.02)
        simulator.configure(insufficient_quota=True)
        result = run.result(timeout=120)
    assert not result.success
    assert "QuotaExhausted" in _step_error(result)
    paid = simulator.stats()["chat_completions"]
    ledger = ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite"))
    assert ledger.get_backend().count() == paid

    simulator.configure(insufficient_quota=False, latency_ms=0)
    assert _run([source, asset], resources, sqlite_instance).success
    assert simulator.stats()["chat_completions"] == 200  # the rest, and nothing twice


def test_params_are_sent_as_body_fields_and_sdk_call_options_are_refused() -> None:
    body = make_task(params={"top_k": 20, "seed": 3}).request_body([], "m")
    assert body["top_k"] == 20 and body["seed"] == 3
    with pytest.raises(ValueError, match=r"\['extra_body'\] are options of the openai SDK") as err:
        make_task(params={"extra_body": {"top_k": 20}})
    assert "params={'top_k': 20}" in str(err.value)
    with pytest.raises(ValueError, match=r"LLMResource\.timeout_s"):
        make_task(params={"timeout": 5})


def test_offline_guard_refuses_remote_endpoint() -> None:
    llm = LLMResource(base_url="https://api.openai.com/v1", api_key="sk-x")
    with pytest.raises(UserError, match="LLM_ASSETS_OFFLINE"):
        llm.run_requests([], lambda r: None)


def test_socket_guard_blocks_non_loopback_connections() -> None:
    import socket

    from tests import conftest

    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="non-loopback"):
        sock.connect(("203.0.113.7", 443))
    assert conftest._blocked_connections == ["('203.0.113.7', 443)"]
    conftest._blocked_connections.clear()


def test_authentication_error_pickles() -> None:
    import pickle

    err = AuthenticationFailed("bad key", status_code=401, code="invalid_api_key")
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, AuthenticationFailed) and again.status_code == 401


@pytest.mark.parametrize(
    ("base_url", "kind"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("http://127.0.0.1:8765/v1", "simulator"),
        ("http://localhost:8000/v1", "vllm"),
        ("http://127.0.0.1:11434/v1", "ollama"),
        ("https://llm.internal.example.com/v1", "openai-compatible"),
    ],
)
def test_kind_badge_names_the_endpoint_and_description_shows_prompts_model_schema(
    base_url: str, kind: str, tmp_path: Path
) -> None:
    from llm_assets import resolve_model_versions

    source = source_asset(ROWS)
    asset = llm_asset(make_task(), upstream=source, description="Sentiment of support texts.")
    llm = LLMResource(base_url=base_url, api_key=TEST_API_KEY, model="gpt-4.1-mini")
    defs = resolve_model_versions(
        dg.Definitions(assets=[source, asset], resources={**_unopened(tmp_path), "llm": llm})
    )
    node = defs.resolve_asset_graph().get(dg.AssetKey("label"))
    assert node.kinds == {kind, "pandas"}
    description = node.description or ""
    assert description.startswith("Sentiment of support texts.")
    assert "Label the sentiment." in description  # system prompt
    assert "Text: {text}" in description  # user prompt
    assert "`gpt-4.1-mini`" in description and f"`{kind}`" in description
    assert '"label"' in description and '"reason"' in description  # output schema
    assert node.code_version == make_task().version_for("gpt-4.1-mini")


def _unopened(tmp_path: Path) -> dict[str, Any]:
    from llm_assets.resources.ledger import ResponseLedger
    from llm_assets.resources.storage import ParquetIOManager

    return {
        "ledger": ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite")),
        "io_manager": ParquetIOManager(base_dir=str(tmp_path / "data")),
    }


def test_kind_badge_before_resolution_is_the_api_the_resource_speaks() -> None:
    source = source_asset(ROWS)
    asset = llm_asset(make_task(model="gpt-4o"), upstream=source)
    spec = asset.specs_by_key[dg.AssetKey("label")]
    assert spec.kinds == {"openai", "pandas"}
    assert "`gpt-4o`" in (spec.description or "")


def test_the_shared_options_are_checked_by_name_for_both_factories() -> None:
    with pytest.raises(UserError, match=r"unknown option\(s\) max_cost; the options are"):
        llm_asset(make_task(), upstream="tickets", max_cost=5.0)  # type: ignore[call-arg]
    with pytest.raises(UserError, match=r"unknown option\(s\) group"):
        planned_asset(
            name="p", upstream="tickets", planner_prompt="{text}", tools=["lookup_product"],
            synthesizer=planner_support.NOTE_TASK, group="x",  # type: ignore[call-arg]
        )  # fmt: skip
    daily = dg.DailyPartitionsDefinition(start_date="2026-11-01")
    asset = llm_asset(make_task(), upstream="tickets", partitions_def=daily, group_name="g")
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    assert asset.group_names_by_key[dg.AssetKey(make_task().name)] == "g"
