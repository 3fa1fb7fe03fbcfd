"""The edit form of a flagged row, built from the task's schema, and reading it back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from llm_assets.resources.review import ReviewRefused

#: Field kinds the form knows; anything else is edited as JSON text.
KINDS = ("enum", "boolean", "integer", "number", "list", "text", "json")


def edit_fields(schema: type[BaseModel]) -> list[dict[str, Any]]:
    """One form field per answer field: its name, kind, choices and limits.

    Examples:
        >>> class A(BaseModel):
        ...     score: float
        ...     tags: list[str]
        >>> [(f["name"], f["kind"]) for f in edit_fields(A)]
        [('score', 'number'), ('tags', 'list')]
    """
    json_schema = schema.model_json_schema()
    required = set(json_schema.get("required", []))
    fields = []
    for name, spec in json_schema.get("properties", {}).items():
        kind, options = _kind(spec)
        fields.append(
            {
                "name": name,
                "kind": kind,
                "options": options,
                "required": name in required,
                "description": spec.get("description", ""),
                "max_length": spec.get("maxLength"),
            }
        )
    return fields


def _kind(spec: Mapping[str, Any]) -> tuple[str, list[Any]]:
    choices = spec.get("enum")
    if choices is None and "const" in spec:
        choices = [spec["const"]]
    if choices is not None:
        return "enum", list(choices)
    kind = spec.get("type")
    if kind in ("boolean", "integer", "number"):
        return str(kind), []
    if kind == "array" and spec.get("items", {}).get("type") in ("string", None):
        return "list", []
    if kind == "string":
        return "text", []
    return "json", []


def read_edit(schema: type[BaseModel], form: Mapping[str, str], row_id: str) -> dict[str, Any]:
    """The edited answer from the submitted form (``field:<name>`` entries), not yet validated.

    Raises:
        ReviewRefused: A number or JSON value that does not parse, named.
    """
    value: dict[str, Any] = {}
    for field in edit_fields(schema):
        name, kind = field["name"], field["kind"]
        raw = form.get(f"field:{name}", "")
        if kind == "list":
            value[name] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif kind == "boolean":
            value[name] = raw == "true"
        elif kind in ("integer", "number", "json") and raw.strip():
            value[name] = _parse(raw, kind, name, row_id)
        elif kind in ("integer", "number", "json"):
            value[name] = None
        else:
            value[name] = raw
    return value


def _parse(raw: str, kind: str, name: str, row_id: str) -> Any:
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        return json.loads(raw)
    except ValueError:
        what = "valid JSON" if kind == "json" else f"a {kind}"
        raise ReviewRefused(
            f"the edit of row {row_id}: {name} {raw!r} is not {what}; nothing recorded"
        ) from None
