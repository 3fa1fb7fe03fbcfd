"""How far a candidate's answers are from the current ones, field by field.

Enums, numbers, booleans and other values agree when equal. Free text agrees when equal once
normalised (case, surrounding and repeated whitespace), and also gets a similarity score in
[0, 1] (``difflib``'s ratio of the normalised texts), so a reworded answer shows as close
rather than simply different. Only rows both sides answered are compared.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel

__all__ = ["FieldAgreement", "field_agreement", "normalised", "row_distance"]

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class FieldAgreement:
    """Agreement of one output field over the rows both sides answered.

    Attributes:
        field: The field.
        kind: ``"text"`` (free text) or ``"exact"`` (enums, numbers, booleans, the rest).
        compared: Rows compared.
        agreement: Share of those rows whose values agree.
        similarity: Mean text similarity, for free text; ``None`` otherwise.
    """

    field: str
    kind: str
    compared: int
    agreement: float
    similarity: float | None


def normalised(value: Any) -> str:
    r"""Text as compared: lower case, whitespace collapsed.

    Examples:
        >>> normalised("  Great   Battery\n")
        'great battery'
    """
    return _SPACE.sub(" ", str(value)).strip().lower()


def _is_text(schema: type[BaseModel], name: str) -> bool:
    annotation = schema.model_fields[name].annotation
    return annotation is str or (
        typing.get_origin(annotation) is typing.Union and str in typing.get_args(annotation)
    )


def field_agreement(
    current: pd.DataFrame, candidate: pd.DataFrame, schema: type[BaseModel]
) -> list[FieldAgreement]:
    """Per field of ``schema``, how often the two tables' answers agree.

    Args:
        current: Rows answered by the current task, indexed by row id.
        candidate: Rows answered by the candidate, same index.
        schema: The current task's output schema; fields the candidate lacks are skipped.

    Returns:
        One entry per field both tables hold.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Out(BaseModel):
        ...     label: str
        ...     score: int
        >>> a = pd.DataFrame({"label": ["good", "bad"], "score": [1, 2]})
        >>> b = pd.DataFrame({"label": ["Good ", "awful"], "score": [1, 3]})
        >>> [(f.field, f.agreement) for f in field_agreement(a, b, Out)]
        [('label', 0.5), ('score', 0.5)]
    """
    both = current.index.intersection(candidate.index)
    out: list[FieldAgreement] = []
    for name in schema.model_fields:
        if name not in current.columns or name not in candidate.columns:
            continue
        left, right = current.loc[both, name].tolist(), candidate.loc[both, name].tolist()
        if _is_text(schema, name):
            pairs = [(normalised(a), normalised(b)) for a, b in zip(left, right, strict=True)]
            same = sum(a == b for a, b in pairs)
            ratios = [difflib.SequenceMatcher(None, a, b).ratio() for a, b in pairs]
            similarity = sum(ratios) / len(ratios) if ratios else None
            out.append(
                FieldAgreement(name, "text", len(pairs), _share(same, len(pairs)), similarity)
            )
        else:
            same = sum(_equal(a, b) for a, b in zip(left, right, strict=True))
            out.append(FieldAgreement(name, "exact", len(left), _share(same, len(left)), None))
    return out


def row_distance(current: pd.DataFrame, candidate: pd.DataFrame, fields: list[str]) -> pd.Series:
    """Per row both answered, how many of ``fields`` differ (normalised): most changed first.

    Examples:
        >>> a = pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})
        >>> row_distance(a, pd.DataFrame({"x": ["a", "c"], "y": [9, 2]}), ["x", "y"]).tolist()
        [1, 1]
    """
    both = current.index.intersection(candidate.index)
    changed = pd.Series(0, index=both)
    for name in fields:
        left = current.loc[both, name].map(normalised)
        right = candidate.loc[both, name].map(normalised)
        changed += (left != right).astype(int)
    return changed.sort_values(ascending=False, kind="stable")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN equals NaN here
    try:
        return bool(a == b)
    except ValueError:  # lists and nested values read back from Parquet as arrays
        return normalised(a) == normalised(b)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
