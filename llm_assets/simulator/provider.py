"""What the provider refuses in a chat request, judged by the ``openai`` SDK's own request types.

The SDK ships the provider's request parameter types (``CompletionCreateParamsNonStreaming``,
a ``TypedDict``); a body is checked against them the way the API checks it: an unknown
parameter is ``Unrecognized request argument supplied``, a value of the wrong type is refused
naming its parameter. On top: a model that does not exist (404 ``model_not_found``),
``max_tokens`` or a temperature other than 1 sent to a reasoning model
(``unsupported_parameter`` / ``unsupported_value``), and a strict structured-output or tool
schema the provider's strict mode refuses (``llm_assets.resources.llm.strict_schema_problems``).
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

from llm_assets.resources.llm.models import is_reasoning_model
from llm_assets.resources.llm.schema import strict_schema_problems
from llm_assets.simulator.parsing import InvalidRequest

#: Models the simulator answers for: its own and the provider's chat models (a dated snapshot
#: such as ``gpt-4o-mini-2024-07-18`` of any of them, and fine-tuned ``ft:`` models, too).
KNOWN_MODELS = frozenset(
    {
        "sim-small", "sim-large", "gpt-3.5-turbo", "gpt-4", "gpt-4-turbo", "gpt-4o",
        "gpt-4o-mini", "chatgpt-4o-latest", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
        "gpt-4.5-preview", "o1", "o1-mini", "o1-pro", "o3", "o3-mini", "o3-pro", "o4-mini",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat-latest", "gpt-5.1", "gpt-5.2",
    }
)  # fmt: skip
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class ModelNotFound(InvalidRequest):
    """The model does not exist: answered with a 404 ``model_not_found``."""

    status = 404


@cache
def _chat_params() -> TypeAdapter[Any]:
    return TypeAdapter(CompletionCreateParamsNonStreaming)


@cache
def _known_params() -> frozenset[str]:
    return frozenset(typing.get_type_hints(CompletionCreateParamsNonStreaming))


def is_known_model(model: str, accepted_models: Iterable[str] = ()) -> bool:
    """Whether the simulator answers for ``model`` (else a 404 ``model_not_found``).

    Examples:
        >>> is_known_model("gpt-4o-mini-2024-07-18"), is_known_model("gpt-4o-mini-typo")
        (True, False)
    """
    if model.startswith("ft:") or model in accepted_models:
        return True
    return _SNAPSHOT.sub("", model) in KNOWN_MODELS


def check_chat_body(
    body: Mapping[str, Any],
    accepted_params: Iterable[str] = (),
    accepted_models: Iterable[str] = (),
) -> None:
    """Refuse ``body`` as the provider would, or return.

    Args:
        body: A decoded ``POST /v1/chat/completions`` body (or a batch line's ``body``).
        accepted_params: Extra top-level fields to take, as an OpenAI-compatible server
            (vLLM's ``top_k``) does.
        accepted_models: Models answered beyond ``KNOWN_MODELS``.

    Raises:
        InvalidRequest: With the provider's message, ``param`` and ``code``.
        ModelNotFound: The model does not exist.

    The model comes after the body's shape, as the provider checks it.

    Examples:
        >>> check_chat_body({"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]})
        >>> check_chat_body({"model": "sim-small", "messages": [], "top_k": 3})
        Traceback (most recent call last):
        ...
        llm_assets.simulator.parsing.InvalidRequest: Unrecognized request argument supplied: top_k
    """
    unknown = sorted(set(body) - _known_params() - set(accepted_params))
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    field = ""
    try:
        checked = _chat_params().validate_python(body)
        for name, value in checked.items():  # Iterable fields are checked as they are read
            field = name
            _drain(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        # A union's member names (``ChatCompletionUserMessageParam``) are not request paths.
        parts = [str(p) for p in error["loc"] if not (isinstance(p, str) and p[:1].isupper())]
        if field and parts[:1] != [field]:
            parts.insert(0, field)
        param = ".".join(parts)
        raise InvalidRequest(
            f"Invalid value for '{param}': {error['msg']}", param, code="invalid_value"
        ) from None
    model = str(body.get("model"))
    if not is_known_model(model, accepted_models):
        raise ModelNotFound(
            f"The model `{model}` does not exist or you do not have access to it.",
            "model",
            code="model_not_found",
        )
    if is_reasoning_model(model):
        _check_reasoning(body, model)
    _check_schemas(body)


def _drain(value: Any) -> None:
    if isinstance(value, Mapping):
        for item in value.values():
            _drain(item)
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        for item in value:
            _drain(item)


def _check_reasoning(body: Mapping[str, Any], model: str) -> None:
    if body.get("max_tokens") is not None:
        raise InvalidRequest(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
            "max_tokens",
            code="unsupported_parameter",
        )
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        raise InvalidRequest(
            f"Unsupported value: 'temperature' does not support {temperature} with this model "
            f"({model}). Only the default (1) value is supported.",
            "temperature",
            code="unsupported_value",
        )


def _check_schemas(body: Mapping[str, Any]) -> None:
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        if spec.get("strict"):
            name = str(spec.get("name"))
            problem = _schema_problem(json.dumps(spec.get("schema"), sort_keys=True))
            if problem:
                raise InvalidRequest(
                    f"Invalid schema for response_format '{name}': {problem}",
                    "response_format",
                    code="invalid_json_schema",
                )
    for index, tool in enumerate(body.get("tools") or ()):
        function = tool.get("function") or {}
        if tool.get("type") == "function" and function.get("strict"):
            problem = _schema_problem(json.dumps(function.get("parameters"), sort_keys=True))
            if problem:
                raise InvalidRequest(
                    f"Invalid schema for function '{function.get('name')}': {problem}",
                    f"tools[{index}].function.parameters",
                    code="invalid_function_parameters",
                )


@lru_cache(maxsize=256)
def _schema_problem(schema_json: str) -> str | None:
    """The first problem of a schema (cached: every row of a task sends the same one)."""
    schema = json.loads(schema_json)
    if not isinstance(schema, dict):
        return "the schema must be a JSON object"
    problems = strict_schema_problems(schema, root_name="schema")
    return str(problems[0]) if problems else None
