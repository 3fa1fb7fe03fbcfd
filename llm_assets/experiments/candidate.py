"""A candidate: the asset's task with overrides, checked before any request is sent.

Overrides name ``LLMTask`` fields: ``model``, ``system_prompt``, ``user_prompt``,
``temperature``, ``max_output_tokens``, ``max_tokens_param``, ``strict``, ``repair_attempts``,
``output_schema`` (a pydantic model as ``package.module:Model``) and ``params.NAME`` (one
request field). On the command line they are ``--set name=value``; ``value`` is read as JSON
when it parses (numbers, ``true``, ``null``) and ``@path`` reads a file's text.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llm_assets.resources.errors import UserError
from llm_assets.task import LLMTask

__all__ = ["SETTABLE", "candidate_task", "parse_sets"]

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
    module_name, sep, attribute = str(value).partition(":")
    if not sep:
        raise UserError(
            f"candidate {label}: output_schema takes a pydantic model as package.module:Model, "
            f"not {value!r}"
        )
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"candidate {label}: cannot import output_schema {value}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise UserError(f"candidate {label}: output_schema {value} is not a pydantic model")
    return found
