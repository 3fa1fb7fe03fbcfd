"""MkDocs hook: field tables generated from the code, so they cannot drift from it.

A line ``<!-- fields: llm_assets.LLMResource -->`` in a page becomes a table of that pydantic
model's fields (a Dagster resource, IO manager or component): name, default and the field's
own ``description``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import BaseModel

_MARKER = re.compile(r"^<!-- fields: ([\w.]+) -->$", re.MULTILINE)
_LONG = 40


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, dict | list) and len(repr(value)) > _LONG:
        return f"{len(value)} entries"
    return f"`{value!r}`"


def fields_table(dotted: str) -> str:
    """A Markdown table of the fields of the pydantic model at ``dotted``.

    Args:
        dotted: ``module.Class``, e.g. ``llm_assets.LLMResource``.

    Returns:
        The table, one row per field in declaration order.
    """
    module_name, _, class_name = dotted.rpartition(".")
    model = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{dotted} is not a pydantic model")
    rows = ["| field | default | meaning |", "| --- | --- | --- |"]
    for name, field in model.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each field-table marker of a page with its table."""
    return _MARKER.sub(lambda match: fields_table(match.group(1)), markdown)
