"""A candidate: the asset's task with overrides, checked before any request is sent.

Overrides name ``LLMTask`` fields: ``model``, ``system_prompt``, ``user_prompt``,
``temperature``, ``max_output_tokens``, ``max_tokens_param``, ``strict``, ``repair_attempts``,
``output_schema`` (a pydantic model as ``package.module:Model``, or a flat JSON Schema
object) and ``params.NAME`` (one request field). On the command line they are
``--set name=value``; ``value`` is read as JSON when it parses (numbers, ``true``, ``null``)
and ``@path`` reads a file's text.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, create_model

from llm_assets.resources.errors import UserError
from llm_assets.task import LLMTask

__all__ = ["SETTABLE", "candidate_task", "model_from_json_schema", "parse_sets"]

#: The task fields a candidate may change (``params.NAME`` as well).
SETTABLE = (
    "model",
    "system_prompt",
    "user_prompt",
    "temperature",
    "max_output_tokens",
    "max_tokens_param",
    "strict",
    "repair_attempts",
    "output_schema",
)


def parse_sets(items: Iterable[str], *, base_dir: Path | None = None) -> dict[str, Any]:
    """``name=value`` pairs as overrides: JSON values where they parse, ``@path`` read as text.

    Raises:
        UserError: An item without ``=``, or an ``@path`` that cannot be read.

    Examples:
        >>> parse_sets(["model=gpt-4.1-mini", "temperature=0.2", "params.seed=7"])
        {'model': 'gpt-4.1-mini', 'temperature': 0.2, 'params.seed': 7}
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--set takes name=value (e.g. model=gpt-4.1-mini), not {item!r}")
        name = name.strip()
        if text.startswith("@"):
            path = (base_dir or Path.cwd()) / text[1:]
            try:
                out[name] = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UserError(f"--set {name}=@{text[1:]}: cannot read {path}: {exc}") from None
            continue
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def candidate_task(task: LLMTask, overrides: Mapping[str, Any], *, label: str = "B") -> LLMTask:
    """``task`` with ``overrides`` applied and validated as a task.

    Args:
        task: The asset's task.
        overrides: Field name to value (see the module docstring).
        label: The candidate's name, for messages.

    Returns:
        The candidate task (the same name, so its requests are the asset's).

    Raises:
        UserError: An unknown field, an output schema that is not importable or not a pydantic
            model, or a value the task refuses (an invalid strict schema, a reasoning model
            with a temperature, ...). The message names the field and the candidate.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Out(BaseModel):
        ...     label: str
        >>> task = LLMTask(name="t", user_prompt="{x}", output_schema=Out)
        >>> candidate_task(task, {"model": "gpt-4.1-mini", "params.seed": 7}).params
        {'seed': 7}
    """
    update: dict[str, Any] = {}
    params = dict(task.params)
    for name, value in overrides.items():
        if name.startswith("params."):
            params[name.removeprefix("params.")] = value
        elif name == "output_schema":
            update[name] = _schema(value, label)
        elif name in SETTABLE:
            update[name] = value
        else:
            raise UserError(
                f"candidate {label}: unknown override '{name}'; a candidate sets "
                f"{', '.join(SETTABLE)} or params.NAME"
            )
    if params != task.params:
        update["params"] = params
    try:
        return LLMTask.model_validate({**_fields(task), **update})
    except (ValidationError, ValueError, TypeError) as exc:
        raise UserError(f"candidate {label} is not a valid task: {exc}") from None


def _fields(task: LLMTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in LLMTask.model_fields}


def _schema(value: Any, label: str) -> type[BaseModel]:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise UserError(f"candidate {label}: output_schema is not valid JSON: {exc}") from None
    if isinstance(value, Mapping):
        return model_from_json_schema(value, label)
    module_name, sep, attribute = str(value).partition(":")
    if not sep:
        raise UserError(
            f"candidate {label}: output_schema takes a pydantic model as package.module:Model "
            f"or a JSON Schema object, not {value!r}"
        )
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"candidate {label}: cannot import output_schema {value}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise UserError(f"candidate {label}: output_schema {value} is not a pydantic model")
    return found


_JSON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def model_from_json_schema(schema: Mapping[str, Any], label: str = "B") -> type[BaseModel]:
    """A pydantic model for a flat JSON Schema object (what a candidate's answer looks like).

    Properties may be strings, integers, numbers, booleans, enums of strings (``enum``), lists
    of those (``type: array`` with ``items``), and nullable (``type: [..., "null"]``).

    Raises:
        UserError: Not an object schema, or a property of a kind not covered, named.

    Examples:
        >>> Model = model_from_json_schema({"type": "object", "required": ["label"],
        ...     "properties": {"label": {"enum": ["good", "bad"]}, "score": {"type": "integer"}}})
        >>> Model(label="good", score=3).model_dump()
        {'label': 'good', 'score': 3}
    """
    properties = schema.get("properties")
    if schema.get("type", "object") != "object" or not isinstance(properties, Mapping):
        raise UserError(
            f"candidate {label}: output_schema must be a JSON Schema object with properties"
        )
    required = set(schema.get("required") or properties)
    fields: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = _field_type(spec, f"{name}")
        if kind is None:
            raise UserError(
                f"candidate {label}: output_schema property '{name}' ({json.dumps(spec)}) is not a "
                "string, integer, number, boolean, enum or list of them; use a pydantic model "
                "(package.module:Model) for nested answers"
            )
        fields[name] = (kind, ...) if name in required else (kind | None, None)
    title = str(schema.get("title") or "CandidateAnswer")
    return create_model(title, **fields)


def _field_type(spec: Any, name: str) -> Any:
    if not isinstance(spec, Mapping):
        return None
    if "enum" in spec and all(isinstance(v, str) for v in spec["enum"]):
        return Literal[tuple(spec["enum"])]
    kinds = spec.get("type")
    nullable = isinstance(kinds, list) and "null" in kinds
    if isinstance(kinds, list):
        rest = [k for k in kinds if k != "null"]
        kinds = rest[0] if len(rest) == 1 else None
    if kinds == "array":
        inner = _field_type(spec.get("items"), name)
        found: Any = list[inner] if inner is not None else None  # type: ignore[valid-type]
    else:
        found = _JSON_TYPES.get(str(kinds))
    if found is None:
        return None
    return found | None if nullable else found
