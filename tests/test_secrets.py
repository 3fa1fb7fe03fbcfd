"""Secrets: read through dg.EnvVar, never shown in a repr, log, error, metadata or file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from llm_assets import llm_asset
from llm_assets.resources.errors import UserError
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources
from tests.test_llm_asset import ROWS, make_task, source_asset

SECRET = "sk-envvar-secret-7d3e91c0aa"
VARIABLE = "LLM_ASSETS_TEST_SECRET_KEY"


def _request(text: str = "hello") -> ChatRequest:
    task = make_task()
    body = task.request_body(task.render_messages({"text": text}), "sim-small")
    return ChatRequest(task.request_key(body), body, 10)


def test_repr_and_str_name_no_secret() -> None:
    llm = LLMResource(
        api_key="sk-very-secret-value", rate_limit_postgres_url="postgresql://u:pw-secret@db/x"
    )
    for text in (repr(llm), str(llm)):
        assert "sk-very-secret-value" not in text and "pw-secret" not in text
    assert "EnvVar('OPENAI_API_KEY')" in repr(LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY")))


@pytest.mark.timeout(300)
def test_envvar_key_never_stored_logged_or_shown(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(VARIABLE, SECRET)
    resources = make_resources(simulator, tmp_path, api_key=dg.EnvVar(VARIABLE))
    rows = [*ROWS, {"id": 99, "text": "bad [[sim:invalid_json]]"}]
    source = source_asset(rows)
    result = dg.materialize(
        [source, llm_asset(make_task(repair_attempts=0), upstream=source)],
        partition_key="eu",
        resources=resources,
        instance=sqlite_instance,
    )
    assert result.success
    assert simulator.stats()["chat_completions"] >= len(rows)
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in stored)
    for path in stored:
        assert SECRET.encode() not in path.read_bytes(), f"API key found in {path}"
    for record in sqlite_instance.all_logs(result.run_id):
        assert SECRET not in str(record)
    out, err = capfd.readouterr()
    assert SECRET not in out and SECRET not in err


def test_envvar_key_works_outside_a_run(
    simulator: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, SECRET)
    llm = LLMResource(base_url=simulator.base_url, api_key=dg.EnvVar(VARIABLE), model="sim-small")
    results: list[ChatResult] = []
    stats = llm.run_requests([_request()], results.append)
    assert stats.done == 1 and results[0].ok


def test_unset_envvar_key_names_the_variable(simulator: SimulatorServer) -> None:
    llm = LLMResource(base_url=simulator.base_url, api_key=dg.EnvVar("LLM_ASSETS_UNSET_VAR"))
    with pytest.raises(UserError, match="LLM_ASSETS_UNSET_VAR") as raised:
        llm.run_requests([_request()], lambda result: None)
    assert "Traceback" not in str(raised.value)


def test_missing_key_for_a_remote_endpoint_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLM_ASSETS_OFFLINE", raising=False)  # nothing is sent: setup fails
    llm = LLMResource()  # no pydantic error: the key is checked when the client opens
    with pytest.raises(dg.DagsterResourceFunctionError) as raised, dg.build_resources({"llm": llm}):
        pass
    cause = raised.value.__cause__
    assert isinstance(cause, UserError)
    assert "api_key=dg.EnvVar('OPENAI_API_KEY')" in str(cause)


def test_client_is_opened_at_setup_and_closed_at_teardown(simulator: SimulatorServer) -> None:
    llm = LLMResource(base_url=simulator.base_url, api_key="k", model="sim-small")
    with dg.build_resources({"llm": llm}) as built:
        resource: Any = built.llm
        session = resource._session
        assert session is not None
        results: list[ChatResult] = []
        resource.run_requests([_request("one")], results.append)
        resource.run_requests([_request("two")], results.append)
        assert resource._session is session and [r.ok for r in results] == [True, True]
    assert resource._session is None and session._closed
