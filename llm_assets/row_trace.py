"""What a trace of one generated row holds (`RowTrace`, `UpstreamTrace`) and how it reads.

``trace`` gathers a `RowTrace` from the Parquet output, the response ledger and the Dagster
instance; `format_trace` turns one into the text ``python -m llm_assets trace`` prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class UpstreamTrace:
    """One upstream asset of the traced asset."""

    asset: str
    partition: str | None
    run_id: str | None
    materialized_at: str | None
    input_row: dict[str, Any] | None = None


@dataclass
class RowTrace:
    """Everything known about one generated row."""

    asset: str
    partition: str | None
    row_id: str
    status: str
    output: dict[str, Any]
    task_version: str
    model: str | None
    request_hash: str | None
    prompt: list[dict[str, Any]] | None
    raw_response: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    paid_by_run_id: str | None
    paid_at: str | None
    materialized_by_run_id: str
    materialized_by_run_status: str | None
    error: str | None
    upstream: list[UpstreamTrace] = field(default_factory=list)
    #: Planner assets: the tool calls that fed the row (tool, arguments, status, result,
    #: duration, attempts) and the ledger key of the planner request that planned them.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    plan_request_hash: str | None = None
    #: Review gates: why the row was flagged, and every decision on its content (decision,
    #: reviewer, decided_at, comment, and an edit's changes as ``diff`` lines), oldest first.
    review_reason: str | None = None
    review: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def format_trace(trace: RowTrace) -> str:
    """Human-readable text of a trace, as ``python -m llm_assets trace`` prints it."""
    lines = [
        f"asset:            {trace.asset}  partition: {trace.partition}  row: {trace.row_id}",
        f"status:           {trace.status}" + (f"  error: {trace.error}" if trace.error else ""),
        f"output:           {json.dumps(trace.output, default=str)}",
        f"task version:     {trace.task_version}",
        f"model:            {trace.model}",
        f"request hash:     {trace.request_hash}",
        f"tokens:           {trace.input_tokens} in / {trace.output_tokens} out",
        f"cost:             ${trace.cost_usd:.6f}",
        f"paid by run:      {trace.paid_by_run_id}  at {trace.paid_at}",
        f"materialized by:  {trace.materialized_by_run_id} ({trace.materialized_by_run_status})",
        "prompt:",
    ]
    for message in trace.prompt or []:
        lines.append(f"  [{message.get('role')}] {message.get('content')}")
    if trace.prompt is None:
        lines.append("  (not in the ledger)")
    lines.append("raw response:")
    lines.append("  " + json.dumps(trace.raw_response, default=str)[:2000])
    if trace.tool_calls:
        lines.append(f"tool calls (planned by request {trace.plan_request_hash}):")
        for call in trace.tool_calls:
            lines.append(
                f"  {call.get('call_id')} {call.get('tool')} {call.get('status')} "
                f"args={json.dumps(call.get('arguments'), default=str)} "
                f"attempts={call.get('attempts', 0)} duration={call.get('duration_s', 0)}s"
                + (f" reason={call['reason']}" if call.get("reason") else "")
            )
            if "result" in call:
                lines.append(f"    result: {json.dumps(call['result'], default=str)[:500]}")
    if trace.review_reason is not None:
        lines.append(f"review:           flagged: {trace.review_reason}")
        for decision in trace.review:
            note = f": {decision['comment']}" if decision.get("comment") else ""
            lines.append(
                f"  {decision['decision']} by {decision['reviewer']} at "
                f"{decision['decided_at']}{note}"
            )
            lines += [f"    {line}" for line in decision.get("diff", [])]
        if not trace.review:
            lines.append("  pending: no decision yet")
    lines.append("upstream:")
    for up in trace.upstream:
        lines.append(
            f"  {up.asset} partition={up.partition} run={up.run_id} at={up.materialized_at}"
        )
        if up.input_row is not None:
            lines.append(f"    input row: {json.dumps(up.input_row, default=str)}")
    return "\n".join(lines)
