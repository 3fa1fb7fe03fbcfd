"""The durable record of side-effecting tool calls, kept in the response ledger.

A side-effecting call's idempotency key hashes its run-independent inputs (tool, version,
arguments, asset, partition, row). Once the tool returned, its result is written to the
ledger under ``tool-effect:<key>``, in the same SQLite file or Postgres schema as the LLM
responses. Before running such a call, the tool op looks the key up: a recorded call is not
run again, its recorded result is reused. That covers step retries, re-execution from
failure and later materializations. The window between the effect and its record (a process
killed right after the tool returned) is the one place an effect can repeat; a tool that
must be exactly-once should also pass the key to the system it changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llm_assets.planner.plan import CheckedCall
from llm_assets.resources.ledger import LedgerEntry, ResponseLedger

EFFECT_PREFIX = "tool-effect:"


def effect_key(idempotency_key: str) -> str:
    """The ledger key under which a call's effect is recorded.

    Examples:
        >>> effect_key("ab12")
        'tool-effect:ab12'
    """
    return EFFECT_PREFIX + idempotency_key


def recorded_result(ledger: ResponseLedger, call: CheckedCall) -> dict[str, Any] | None:
    """The result of ``call`` if its effect already happened, else ``None``."""
    if call.idempotency_key is None:
        return None
    entry = ledger.get(effect_key(call.idempotency_key))
    if entry is None:
        return None
    result = entry.response.get("result")
    return result if isinstance(result, dict) else None


def record_effect(
    ledger: ResponseLedger,
    call: CheckedCall,
    result: dict[str, Any],
    *,
    tool_version: str,
    duration_s: float,
    run_id: str,
    asset: str,
) -> None:
    """Records that ``call``'s effect happened, with its result (at most once per key)."""
    if call.idempotency_key is None:
        return
    ledger.put_many(
        [
            LedgerEntry(
                key=effect_key(call.idempotency_key),
                response={"result": result, "call_id": call.call_id},
                request={"tool": call.tool, "arguments": call.arguments, "row_id": call.row_id},
                model=f"tool:{call.tool}",
                input_tokens=0,
                output_tokens=0,
                cost_usd=0.0,
                latency_s=duration_s,
                created_at=datetime.now(UTC),
                run_id=run_id,
                asset_key=asset,
                partition_key=call.partition,
                task_version=tool_version,
            )
        ]
    )
