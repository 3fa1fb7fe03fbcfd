"""Answers planner requests: a deterministic plan over the tools the request offers.

A planner request offers tools (``tools``: OpenAI function definitions) and asks for a
JSON-schema answer whose object has a ``calls`` array of ``{tool, arguments}``. The plan calls
each offered tool once, in the order offered. Arguments come from ``name: value`` (or
``name=value``) lines of the first user message when it has them, else are filled from the
tool's parameter schema, deterministically from the request.

Markers in any user message shape the plan (for tests), written ``[[plan:NAME]]`` or
``[[plan:NAME=VALUE]]``:

- ``tools=a,b``: call these tools (offered or not) instead of every offered one;
- ``calls=N``: make N calls, cycling through the chosen tools;
- ``none``: plan no calls;
- ``unknown_tool``: the first call names a tool that does not exist;
- ``bad_args``: the first call's arguments are an object with an unexpected key;
- ``invalid_json``: the answer is cut in the middle (not valid JSON).
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from llm_assets.simulator.phrases import PhraseMaker
from llm_assets.simulator.schema_fill import fill_schema

_MARKER = re.compile(r"\[\[plan:([a-z_]+)(?:=([^\]]*))?\]\]")
UNKNOWN_TOOL = "no_such_tool"
MAX_SIMULATED_CALLS = 10_000


def is_plan_request(body: dict[str, Any]) -> bool:
    """True when the request offers tools and asks for a ``{calls: [...]}`` JSON answer.

    Examples:
        >>> fmt = {"type": "json_schema", "json_schema": {"schema": {"properties": {"calls": {}}}}}
        >>> is_plan_request({"tools": [{}], "response_format": fmt})
        True
        >>> is_plan_request({"response_format": fmt})
        False
    """
    tools = body.get("tools")
    response_format = body.get("response_format")
    if not isinstance(tools, list) or not isinstance(response_format, dict):
        return False
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return isinstance(properties, dict) and "calls" in properties


def _markers(messages: list[dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            for name, value in _MARKER.findall(message["content"]):
                found.setdefault(name, value)
    return found


def _offered(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    offered: dict[str, dict[str, Any]] = {}
    for item in body.get("tools") or []:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            params = function.get("parameters")
            offered[function["name"]] = params if isinstance(params, dict) else {}
    return offered


def _coerce(text: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(float(text))
        if kind == "number":
            return float(text)
        if kind == "boolean":
            return text.strip().lower() in ("1", "true", "yes")
    except ValueError:
        return text
    return text


def _arguments(
    params: dict[str, Any], prompt: str, rng: random.Random, phrases: PhraseMaker
) -> dict[str, Any]:
    properties = params.get("properties")
    if not isinstance(properties, dict):
        return {}
    filled = fill_schema(params, rng, phrases) if properties else {}
    values = dict(filled) if isinstance(filled, dict) else {}
    for name, schema in properties.items():
        match = re.search(rf"(?im)^\s*{re.escape(name)}\s*[:=]\s*(.+?)\s*$", prompt)
        if match and isinstance(schema, dict):
            values[name] = _coerce(match.group(1), schema)
    return values


def plan_content(
    body: dict[str, Any], messages: list[dict[str, Any]], rng: random.Random
) -> str | None:
    """The planner's answer text, or ``None`` when ``body`` is not a planner request.

    Examples:
        >>> tools = [{"type": "function", "function": {"name": "stats", "parameters": {
        ...     "type": "object", "properties": {"product": {"type": "string"}},
        ...     "required": ["product"], "additionalProperties": False}}}]
        >>> fmt = {"type": "json_schema", "json_schema": {"schema": {"properties": {"calls": {}}}}}
        >>> msgs = [{"role": "user", "content": "product: lamp"}]
        >>> text = plan_content({"tools": tools, "response_format": fmt}, msgs, random.Random(0))
        >>> json.loads(text)["calls"][0]
        {'tool': 'stats', 'arguments': '{"product": "lamp"}'}
    """
    if not is_plan_request(body):
        return None
    offered = _offered(body)
    markers = _markers(messages)
    first_user = next((m.get("content") for m in messages if m.get("role") == "user"), "")
    prompt = first_user if isinstance(first_user, str) else ""
    phrases = PhraseMaker(prompt)
    names = list(offered)
    if "tools" in markers:
        names = [n.strip() for n in markers["tools"].split(",") if n.strip()]
    if "none" in markers or not names:
        return json.dumps({"calls": []})
    count = len(names)
    if markers.get("calls", "").isdigit():
        count = min(int(markers["calls"]), MAX_SIMULATED_CALLS)
    calls = []
    for i in range(count):
        name = names[i % len(names)]
        arguments = _arguments(offered.get(name, {}), prompt, rng, phrases)
        calls.append({"tool": name, "arguments": json.dumps(arguments, sort_keys=True)})
    if calls and "unknown_tool" in markers:
        calls[0]["tool"] = UNKNOWN_TOOL
    if calls and "bad_args" in markers:
        calls[0]["arguments"] = json.dumps({"unexpected_argument": [1, 2]})
    text = json.dumps({"calls": calls}, ensure_ascii=False)
    if "invalid_json" in markers:
        return text[: max(1, len(text) // 2)]
    return text
