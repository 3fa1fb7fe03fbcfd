"""A decision as ``trace`` shows it: who, when, what, and an edit as a diff of the answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm_assets.resources.review import DecisionRecord


def edit_diff(answer: Mapping[str, Any], edited: Mapping[str, Any]) -> list[str]:
    """The fields an edit changed, as ``- field: old`` / ``+ field: new`` lines.

    Examples:
        >>> edit_diff({"label": "spam", "note": "x"}, {"label": "ham", "note": "x"})
        ['- label: "spam"', '+ label: "ham"']
    """
    lines = []
    for name in sorted(set(answer) | set(edited)):
        before, after = _jsonable(answer.get(name)), _jsonable(edited.get(name))
        if before != after:
            lines.append(f"- {name}: {json.dumps(before, ensure_ascii=False)}")
            lines.append(f"+ {name}: {json.dumps(after, ensure_ascii=False)}")
    return lines


def decision_entry(record: DecisionRecord, answer: Mapping[str, Any]) -> dict[str, Any]:
    """One decision of a row's history for ``trace`` (JSON-able)."""
    entry: dict[str, Any] = {
        "decision": record.decision,
        "reviewer": record.reviewer,
        "decided_at": record.decided_at.isoformat(),
        "comment": record.comment,
        "revision": record.revision,
    }
    if record.value is not None:
        entry["value"] = record.value
        entry["diff"] = edit_diff(answer, record.value)
    return entry


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays from Parquet list columns
        return value.tolist()
    return value
