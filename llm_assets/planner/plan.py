"""Plans: the planner's structured answer, and its validation before anything runs.

The planner answers each input row with a ``Plan``: a list of ``ToolCall`` (tool name and
arguments as JSON text, like OpenAI function calls). ``check_row`` turns a row's answer into
``CheckedCall`` records: a call runs only if its tool is registered, allowlisted by the asset
and its arguments pass the tool's schema. One bad call rejects the row's whole plan, so a row
never runs half of a malformed plan.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, Field

from llm_assets.hashing import canonical_json
from llm_assets.planner.tools import Tool, registered_tool

ACCEPTED = "accepted"
REJECTED = "rejected"
SKIPPED = "skipped"
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class ToolCall(BaseModel):
    """One call the planner asks for."""

    tool: str = Field(description="Name of one of the tools offered in this request.")
    arguments: str = Field(
        description="The tool's arguments: a JSON object matching its parameters schema."
    )


class Plan(BaseModel):
    """The planner's answer for one input row: the tool calls to make, independent of each other.

    Examples:
        >>> Plan.model_validate_json('{"calls": [{"tool": "t", "arguments": "{}"}]}').calls[0]
        ToolCall(tool='t', arguments='{}')
    """

    calls: list[ToolCall] = Field(
        description="Independent tool calls whose results answer the request; empty if none."
    )


@dataclass(frozen=True)
class CheckedCall:
    """A planned call after validation; only ``accepted`` calls ever run.

    Attributes:
        call_id: Stable id, safe as a Dagster mapping key (``[A-Za-z0-9_]``).
        partition: Partition of the row that asked for it.
        row_id: The row's id, as text.
        tool: The tool name the planner wrote.
        arguments: Validated arguments (``None`` when rejected before parsing them).
        raw_arguments: The arguments text the planner wrote.
        status: ``accepted``, ``rejected`` (this call is bad) or ``skipped`` (another call of
            the row's plan is bad).
        reason: Why it was rejected or skipped.
        idempotency_key: For side-effecting tools: hash of the call's run-independent inputs.
    """

    call_id: str
    partition: str | None
    row_id: str
    tool: str
    arguments: dict[str, Any] | None
    raw_arguments: str
    status: str
    reason: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class RowPlan:
    """What was planned for one row: its calls, or why the plan failed as a whole."""

    partition: str | None
    row_id: str
    calls: tuple[CheckedCall, ...] = ()
    error_class: str | None = None
    error: str | None = None

    @property
    def runnable(self) -> bool:
        """True when the row's plan was valid (possibly with no calls)."""
        return self.error_class is None


@dataclass(frozen=True)
class ToolBatch:
    """The calls one mapped step runs, in order."""

    calls: tuple[CheckedCall, ...] = field(default_factory=tuple)


def safe_key(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9_]`` replaced by ``_``.

    Examples:
        >>> safe_key("lookup-2026/11")
        'lookup_2026_11'
    """
    return _UNSAFE.sub("_", text) or "_"


def idempotency_key(
    tool: Tool, arguments: Mapping[str, Any], asset: str, partition: str | None, row_id: str
) -> str:
    """The key of one side-effecting call: the same call for the same row is the same effect.

    Examples:
        >>> class Note(BaseModel):
        ...     text: str
        >>> send = Tool("send", "Sends a note.", print, Note, Note, side_effects=True)
        >>> a = idempotency_key(send, {"text": "hi"}, "notes", "2026-11-01", "7")
        >>> a == idempotency_key(send, {"text": "hi"}, "notes", "2026-11-01", "7"), len(a)
        (True, 64)
    """
    spec = {
        "tool": tool.name,
        "version": tool.version,
        "arguments": dict(arguments),
        "asset": asset,
        "partition": partition,
        "row": row_id,
    }
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def check_row(
    answer: Mapping[str, Any] | None,
    *,
    allowed: Mapping[str, Tool],
    asset: str,
    partition: str | None,
    row_id: str,
    first_index: int,
    max_calls_per_row: int,
) -> RowPlan:
    """Validates one row's plan against the allowlist and each tool's argument schema.

    Args:
        answer: The planner's validated answer (``Plan`` fields), or ``None`` if it failed.
        allowed: The asset's allowlist.
        asset: Asset name (part of idempotency keys).
        partition: The row's partition.
        row_id: The row's id as text.
        first_index: Index of the row's first call in the whole plan (for stable call ids).
        max_calls_per_row: A row asking for more calls is rejected.

    Returns:
        The row's plan; ``error_class`` is set when any call was rejected.
    """
    planned = list((answer or {}).get("calls") or [])
    if len(planned) > max_calls_per_row:
        reason = f"the plan has {len(planned)} calls, over max_calls_per_row={max_calls_per_row}"
        return RowPlan(partition, row_id, (), "plan_too_large", reason)
    calls: list[CheckedCall] = []
    for offset, item in enumerate(planned):
        name, raw = str(item.get("tool", "")), str(item.get("arguments", ""))
        call_id = f"{safe_key(name)[:40]}_{first_index + offset:05d}"
        base = CheckedCall(call_id, partition, row_id, name, None, raw, REJECTED)
        found = allowed.get(name)
        if found is None:
            known = "registered but not allowlisted" if registered_tool(name) else "unknown"
            calls.append(
                replace(
                    base,
                    reason=f"tool {name!r} is {known}; this asset allows: "
                    f"{', '.join(sorted(allowed))}",
                )
            )
            continue
        try:
            arguments = found.check_arguments(raw)
        except ValueError as exc:
            calls.append(replace(base, reason=f"{name}: {exc}"))
            continue
        key = (
            idempotency_key(found, arguments, asset, partition, row_id)
            if found.side_effects
            else None
        )
        calls.append(replace(base, arguments=arguments, status=ACCEPTED, idempotency_key=key))
    bad = [c for c in calls if c.status == REJECTED]
    if not bad:
        return RowPlan(partition, row_id, tuple(calls))
    skipped = "not run: another call of this row's plan was rejected"
    calls = [
        replace(c, status=SKIPPED, reason=skipped) if c.status == ACCEPTED else c for c in calls
    ]
    reasons = "; ".join(f"{c.call_id}: {c.reason}" for c in bad)
    return RowPlan(partition, row_id, tuple(calls), "plan_rejected", reasons)


def batch_calls(calls: Sequence[CheckedCall], calls_per_step: int) -> dict[str, ToolBatch]:
    """Groups accepted calls into mapped steps, keyed by a stable, safe mapping key.

    Calls of one tool go together; a step holds at most ``calls_per_step`` calls. A plan with
    no call still gets one empty step (``no_calls``), so the collecting op always runs.

    Examples:
        >>> c = CheckedCall("t_00000", None, "1", "t", {}, "{}", ACCEPTED)
        >>> list(batch_calls([c], 1))
        ['t_00000']
        >>> list(batch_calls([], 4))
        ['no_calls']
    """
    by_tool: dict[str, list[CheckedCall]] = {}
    for call in calls:
        by_tool.setdefault(call.tool, []).append(call)
    batches: dict[str, ToolBatch] = {}
    for name, group in by_tool.items():
        for start in range(0, len(group), calls_per_step):
            chunk = tuple(group[start : start + calls_per_step])
            key = chunk[0].call_id if len(chunk) == 1 else f"{safe_key(name)[:40]}_b{start:05d}"
            batches[key] = ToolBatch(chunk)
    return batches or {"no_calls": ToolBatch()}
