"""Running the accepted calls of one mapped step: in order, or in threads for I/O-bound tools.

A side-effecting call whose effect the ledger already records is not run again: its recorded
result is reused (see ``effects``). A tool that raises fails the step with
``ToolFailedError``, so the step's ``RetryPolicy`` applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llm_assets.planner.effects import record_effect, recorded_result
from llm_assets.planner.errors import ToolFailedError
from llm_assets.planner.plan import ACCEPTED, CheckedCall
from llm_assets.planner.rows import ToolOutcome
from llm_assets.planner.tools import Tool
from llm_assets.resources.ledger import ResponseLedger


@dataclass(frozen=True)
class CallContext:
    """Where calls run: the allowlist, the effect record, and the step's identity."""

    tools: Mapping[str, Tool]
    ledger: ResponseLedger | None
    run_id: str
    asset: str
    attempt: int


def run_call(call: CheckedCall, where: CallContext) -> ToolOutcome:
    """Runs one accepted call (or reuses its recorded effect).

    Raises:
        ToolFailedError: The call is not accepted or allowlisted, or the tool raised.
    """
    found = where.tools.get(call.tool)
    if call.status != ACCEPTED or found is None or call.arguments is None:
        raise ToolFailedError(call.tool, call.call_id, call.row_id, "call not allowed")
    started, clock = time.time(), time.monotonic()
    ledger = where.ledger if found.side_effects else None
    result = recorded_result(ledger, call) if ledger is not None else None
    reused = result is not None
    if result is None:
        try:
            result = found.run(call.arguments)
        except Exception as exc:
            raise ToolFailedError(
                call.tool, call.call_id, call.row_id, f"{type(exc).__name__}: {exc}"
            ) from exc
        if ledger is not None:
            record_effect(
                ledger,
                call,
                result,
                tool_version=found.version,
                duration_s=time.monotonic() - clock,
                run_id=where.run_id,
                asset=where.asset,
            )
    duration = time.monotonic() - clock
    return ToolOutcome(call.call_id, result, duration, where.attempt, reused, started, time.time())


def run_calls(
    calls: Sequence[CheckedCall],
    where: CallContext,
    threads: int,
    on_done: Callable[[CheckedCall, ToolOutcome], None],
) -> list[ToolOutcome]:
    """Runs a step's calls, up to ``threads`` at a time; outcomes in the calls' order."""

    def one(call: CheckedCall) -> ToolOutcome:
        outcome = run_call(call, where)
        on_done(call, outcome)
        return outcome

    if threads <= 1 or len(calls) <= 1:
        return [one(call) for call in calls]
    with ThreadPoolExecutor(max_workers=min(threads, len(calls))) as pool:
        return list(pool.map(one, calls))
