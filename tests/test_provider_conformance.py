"""The simulator speaks as the provider: its answers are the SDK's response models field for
field, and it refuses what the provider refuses, with the provider's status and error shape.

Requests are sent with the real ``openai`` SDK over HTTP. Every chat body the example
pipeline, the planner and batch mode send is also checked by the simulator against the SDK's
``CompletionCreateParamsNonStreaming`` in every other test of the suite (unknown fields and
wrong types are refused there, so any such request fails its test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from openai.types import Batch, ErrorObject, FileObject
from openai.types.chat import ChatCompletion
from pydantic import BaseModel
from reviews_example.pipeline import INSIGHT_TASK

from llm_assets import LLMTask
from llm_assets.resources.errors import ModelNotFound
from llm_assets.resources.llm import ChatRequest, LLMResource
from llm_assets.simulator import SimulatorServer
from llm_assets.simulator.provider import check_chat_body
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.timeout(60)

#: Fields the provider leaves out of a response unless they apply (all others are always sent).
SENT_WHEN_THEY_APPLY = {
    "ChatCompletion.metadata",
    "ChatCompletion.moderation",
    "ChatCompletionMessage.tool_calls",
    "ChatCompletionMessage.function_call",
    "ChatCompletionMessage.audio",
    "FileObject.expires_at",
    "ErrorObject.misalignment",
    "CompletionTokensDetails.text_tokens",
    "PromptTokensDetails.text_tokens",
    "PromptTokensDetails.image_tokens",
    "PromptTokensDetails.cache_write_tokens",
}

STRICT_OK = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}


def shape_problems(raw: Any, model: type[BaseModel]) -> list[str]:
    """Where ``raw`` (decoded JSON) differs from ``model``: extra keys, keys never sent."""
    problems: list[str] = []
    _compare(raw, model.model_validate(raw), model.__name__, problems)
    return problems


def _compare(raw: Any, parsed: Any, path: str, problems: list[str]) -> None:
    if isinstance(parsed, BaseModel):
        name = type(parsed).__name__
        problems += [f"{path}.{key}: not in the SDK's {name}" for key in parsed.model_extra or {}]
        for field in type(parsed).model_fields:
            if field not in raw and f"{name}.{field}" not in SENT_WHEN_THEY_APPLY:
                problems.append(f"{path}.{field}: the SDK's {name} field is never sent")
            elif field in raw:
                _compare(raw[field], getattr(parsed, field), f"{path}.{field}", problems)
    elif isinstance(parsed, list):
        for i, (raw_item, item) in enumerate(zip(raw, parsed, strict=True)):
            _compare(raw_item, item, f"{path}[{i}]", problems)


@pytest.fixture
def client(simulator: SimulatorServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=simulator.base_url, api_key=TEST_API_KEY, max_retries=0) as sdk:
        yield sdk


def _raw_post(simulator: SimulatorServer, path: str, body: dict[str, Any]) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    return httpx2.post(f"{simulator.base_url}{path}", json=body, headers=headers, timeout=20)


def _chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": "sim-small",
        "messages": [
            {"role": "user", "content": "a review"},
        ],
        **extra,
    }


# Responses


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"response_format": {"type": "json_schema",
                             "json_schema": {"name": "L", "schema": STRICT_OK, "strict": True}}},
        {"messages": [{"role": "user", "content": "[[sim:refusal]] no"}]},
        {"messages": [{"role": "user", "content": "[[sim:length]] cut"}]},
    ],
    ids=["text", "schema", "refusal", "truncated"],
)  # fmt: skip
def test_a_chat_completion_is_the_sdks_model_field_for_field(
    simulator: SimulatorServer, extra: dict[str, Any]
) -> None:
    response = _raw_post(simulator, "/chat/completions", _chat(**extra))
    assert response.status_code == 200, response.text
    raw = response.json()
    assert shape_problems(raw, ChatCompletion) == []
    usage = raw["usage"]
    assert set(usage["prompt_tokens_details"]) == {"cached_tokens", "audio_tokens"}
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_batch_and_file_objects_are_the_sdks_models(
    simulator: SimulatorServer, client: openai.OpenAI
) -> None:
    simulator.configure(batch_auto_complete_s=0)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": _chat()}
    uploaded = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    raw_file = httpx2.get(f"{simulator.base_url}/files/{uploaded.id}", headers=headers).json()
    assert shape_problems(raw_file, FileObject) == []

    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for _ in range(4):  # validating, in_progress, finalizing, completed
        raw_batch = httpx2.get(f"{simulator.base_url}/batches/{batch.id}", headers=headers).json()
        assert shape_problems(raw_batch, Batch) == [], raw_batch["status"]
        simulator.advance_batches(batch_id=batch.id)
    assert raw_batch["status"] == "completed"
    output = client.files.content(raw_batch["output_file_id"]).text.splitlines()
    assert shape_problems(json.loads(output[0])["response"]["body"], ChatCompletion) == []


@pytest.mark.parametrize(
    ("configure", "body", "status"),
    [
        ({}, _chat(top_k=3), 400),
        ({"api_keys": ["sk-other-key-000000"]}, _chat(), 401),
        ({}, _chat(model="no-such-model"), 404),
        ({"insufficient_quota": True}, _chat(), 429),
        ({}, _chat(messages=[{"role": "user", "content": "[[sim:500]] x"}]), 500),
    ],
    ids=["400", "401", "404", "429-quota", "500"],
)
def test_error_bodies_are_the_sdks_error_object(
    simulator: SimulatorServer, configure: dict[str, Any], body: dict[str, Any], status: int
) -> None:
    simulator.configure(**configure)
    response = _raw_post(simulator, "/chat/completions", body)
    assert response.status_code == status
    raw = response.json()
    assert set(raw) == {"error"}
    assert shape_problems(raw["error"], ErrorObject) == []


# Refusals: each is what the provider answers, through the SDK's own exception classes.


def _strict_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        (
            {**STRICT_OK, "properties": {"label": {"$ref": "#/$defs/L", "description": "d"}},
             "$defs": {"L": {"type": "string"}}},
            "schema.label: a $ref may not have other keywords beside it (description)",
        ),
        ({k: v for k, v in STRICT_OK.items() if k != "additionalProperties"},
         "schema: 'additionalProperties' must be false"),
        ({**STRICT_OK, "properties": {**STRICT_OK["properties"], "b": {"type": "string"}}},
         "schema: every property must be required; not required: b"),
        ({**STRICT_OK, "properties": {"label": {"type": "array", "items": {"type": "string"},
                                                "uniqueItems": True}}},
         "schema.label: keyword 'uniqueItems' is not supported in strict mode"),
        ({"type": "array", "items": {"type": "string"}},
         "schema: the top level must be an object"),
    ],
    ids=["ref-with-sibling", "no-additional-properties", "not-all-required",
         "unsupported-keyword", "root-not-object"],
)  # fmt: skip
def test_a_strict_schema_the_provider_refuses_is_a_400(
    client: openai.OpenAI, schema: dict[str, Any], words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(response_format=_strict_format(schema)))
    assert refused.value.status_code == 400
    assert refused.value.param == "response_format"
    assert refused.value.code == "invalid_json_schema"
    assert "Invalid schema for response_format 'A': " + words in refused.value.message


def test_a_strict_tool_schema_the_provider_refuses_is_a_400(client: openai.OpenAI) -> None:
    loose = {"type": "object", "properties": {"q": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": loose, "strict": True}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(tools=[tool]))
    assert refused.value.param == "tools[0].function.parameters"


def test_an_unknown_parameter_is_refused_unless_the_server_takes_it(
    simulator: SimulatorServer, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(), extra_body={"top_k": 20})
    assert "Unrecognized request argument supplied: top_k" in refused.value.message
    simulator.configure(accepted_params=["top_k"])  # an OpenAI-compatible server's own field
    assert client.chat.completions.create(**_chat(), extra_body={"top_k": 20}).choices


def test_a_wrong_type_is_refused_naming_the_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(), extra_body={"temperature": "hot"})
    assert refused.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as bad_role:
        client.chat.completions.create(**_chat(messages=[{"role": "robot", "content": "x"}]))
    assert bad_role.value.param is not None and bad_role.value.param.startswith("messages.0")


def test_a_reasoning_model_refuses_max_tokens_and_a_temperature(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**_chat(model="o4-mini", max_tokens=50))
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "max_tokens")
    assert "Use 'max_completion_tokens' instead" in refused.value.message
    with pytest.raises(openai.BadRequestError) as hot:
        client.chat.completions.create(**_chat(model="o4-mini", temperature=0))
    assert (hot.value.code, hot.value.param) == ("unsupported_value", "temperature")
    answer = client.chat.completions.create(**_chat(model="o4-mini", max_completion_tokens=50))
    assert answer.model == "o4-mini"
    # A chat model takes either.
    assert client.chat.completions.create(**_chat(model="gpt-4o-mini", max_tokens=50)).choices


def test_a_model_that_does_not_exist_is_a_404_and_the_step_says_so(
    simulator: SimulatorServer, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(**_chat(model="gpt-4o-mini-typo"))
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(**_chat(model="claude-opus"))
    llm = LLMResource(base_url=simulator.base_url, api_key=TEST_API_KEY, model="mistral-tiny")
    request = ChatRequest(key="k", body=_chat(model="mistral-tiny"), est_prompt_tokens=10)
    with pytest.raises(ModelNotFound, match="mistral-tiny"):
        llm.run_requests([request], on_result=lambda result: None)


def test_a_batch_line_the_provider_refuses_fails_that_line_only(
    simulator: SimulatorServer, client: openai.OpenAI
) -> None:
    simulator.configure(batch_auto_complete_s=0)
    lines = [
        {"custom_id": "good", "method": "POST", "url": "/v1/chat/completions", "body": _chat()},
        {"custom_id": "unknown-param", "method": "POST", "url": "/v1/chat/completions",
         "body": _chat(top_k=3)},
        {"custom_id": "loose-schema", "method": "POST", "url": "/v1/chat/completions",
         "body": _chat(response_format=_strict_format({"type": "object", "properties": {}}))},
    ]  # fmt: skip
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for _ in range(3):
        simulator.advance_batches(batch_id=batch.id)
    done = client.batches.retrieve(batch.id)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 2)
    error_file = client.files.content(done.error_file_id or "").text
    errors = [json.loads(line) for line in error_file.splitlines()]
    by_id = {line["custom_id"]: line["response"] for line in errors}
    assert by_id["unknown-param"]["status_code"] == 400
    assert "top_k" in by_id["unknown-param"]["body"]["error"]["message"]
    assert by_id["loose-schema"]["body"]["error"]["code"] == "invalid_json_schema"


def test_the_checks_take_every_request_the_library_builds() -> None:
    """What LLMTask builds passes the provider's checks, for a chat and a reasoning model."""
    body = INSIGHT_TASK.request_body([{"role": "user", "content": "x"}], "gpt-4o-mini")
    check_chat_body(body)
    fields = {name: getattr(INSIGHT_TASK, name) for name in type(INSIGHT_TASK).model_fields}
    reasoning = LLMTask(
        **{**fields, "max_tokens_param": "max_completion_tokens", "temperature": None}
    )
    check_chat_body(reasoning.request_body([{"role": "user", "content": "x"}], "o3"))
