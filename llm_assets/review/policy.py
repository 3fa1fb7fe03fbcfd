"""``ReviewPolicy``: which rows of an ``llm_asset`` wait for a person, and for how long."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm_assets.provenance import STATUS_FAILED

#: A Python test on a row (its id, passthrough and answer fields, ``llm_status``): a reason to
#: review it (a string, or True), or a falsy value.
RowTest = Callable[[Mapping[str, Any]], str | bool | None]
OnTimeout = Literal["approve", "reject", "fail"]


class ReviewPolicy(BaseModel):
    """Which rows wait for a person's decision before they flow downstream.

    A row is flagged when any rule holds; the first that holds is its reason. The audit sample
    draws from the row's request hash and ``seed``, so the same rows are drawn on every
    materialization and on every machine.

    Attributes:
        below: Answer field -> threshold: flag rows whose field is under it
            (``{"confidence": 0.7}``).
        labels: Answer field -> values: flag rows whose field is one of them, or (for a list
            field) holds one of them (``{"sentiment": ["mixed"]}``).
        failed: Also flag rows that failed (a reviewer may supply the answer or reject them).
        sample_rate: Share of the other rows drawn at random for an audit (0 to 1).
        seed: Seed of the audit sample.
        when: A Python test on each row, for what the rules above do not say (not in YAML).
        timeout_s: Seconds after a row is first flagged before ``on_timeout`` settles it;
            ``None`` waits for people as long as it takes.
        on_timeout: ``approve`` or ``reject`` the rows still waiting, or ``fail`` the reviewed
            asset's run naming them.
        clock: The time now (the wall clock; a test passes a virtual one).

    Examples:
        >>> policy = ReviewPolicy(below={"confidence": 0.7}, labels={"label": ["other"]})
        >>> policy.reason({"confidence": 0.4, "label": "spam", "llm_status": "ok"}, "ab" * 32)
        'confidence 0.4 < 0.7'
        >>> policy.reason({"confidence": 0.9, "label": "spam", "llm_status": "ok"}, "ab" * 32)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    below: dict[str, float] = Field(default_factory=dict)
    labels: dict[str, list[Any]] = Field(default_factory=dict)
    failed: bool = False
    sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = 0
    when: RowTest | None = Field(default=None, exclude=True)
    timeout_s: float | None = Field(default=None, gt=0)
    on_timeout: OnTimeout = "fail"
    clock: Callable[[], datetime] = Field(default=lambda: datetime.now(UTC), exclude=True)

    @field_validator("labels")
    @classmethod
    def _labels_are_lists(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(f"labels for {', '.join(empty)} list no value to flag")
        return value

    def fields(self) -> set[str]:
        """The answer fields the rules read."""
        return set(self.below) | set(self.labels)

    def reason(self, row: Mapping[str, Any], request_key: str | None) -> str | None:
        """Why ``row`` needs a person, or None.

        Args:
            row: The output row: answer fields, passthrough columns, ``llm_status``.
            request_key: Its request hash (the audit sample's draw); None for a row with no
                request (an empty prompt).
        """
        if row.get("llm_status") == STATUS_FAILED:
            return f"failed: {row.get('llm_error_class') or 'error'}" if self.failed else None
        for name, threshold in self.below.items():
            value = row.get(name)
            if isinstance(value, int | float) and not math.isnan(value) and value < threshold:
                return f"{name} {value} < {threshold}"
        for name, values in self.labels.items():
            value = row.get(name)
            found = [v for v in values if _has(value, v)]
            if found:
                return f"{name} is {found[0]}"
        if self.when is not None:
            verdict = self.when(row)
            if verdict:
                return verdict if isinstance(verdict, str) else "flagged by the policy's test"
        if self.sample_rate and request_key and self._drawn(request_key):
            return f"audit sample ({self.sample_rate:.0%})"
        return None

    def _drawn(self, request_key: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}:{request_key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.sample_rate

    def deadline(self, opened_at: datetime) -> datetime | None:
        """When a row first flagged at ``opened_at`` times out, or None."""
        return None if self.timeout_s is None else opened_at + timedelta(seconds=self.timeout_s)

    def timed_out(self, opened_at: datetime | None) -> bool:
        """Whether a row first flagged at ``opened_at`` has waited past the timeout."""
        deadline = None if opened_at is None else self.deadline(opened_at)
        return deadline is not None and self.clock() >= deadline


def _has(value: Any, wanted: Any) -> bool:
    if isinstance(value, list | tuple | set):
        return wanted in value
    if hasattr(value, "tolist"):  # a numpy array from a Parquet list column
        return wanted in value.tolist()
    return bool(value == wanted)
