"""The errors of planner assets, under the project's one error tree.

::

    LLMAssetsError
    ├── UserError
    │   ├── ToolDefinitionError   a ``@tool`` function or an allowlist is malformed
    │   └── PlanTooLargeError     a plan asks for more tool calls than the fan-out cap
    └── ToolFailedError           a tool raised; the step fails (and is retried by its policy)

A rejected call (unknown tool, not allowlisted, bad arguments, invalid plan JSON) is not an
exception: it is kept in the plan with its reason, its row fails, and nothing runs for it.
Every class pickles, because Dagster moves errors between processes.
"""

from __future__ import annotations

from typing import Any

from llm_assets.resources.errors import LLMAssetsError, UserError


class ToolDefinitionError(UserError):
    """A ``@tool`` function or a planner asset's allowlist is malformed."""


class PlanTooLargeError(UserError):
    """The plan asks for more tool calls than ``max_tool_calls``; nothing was run."""

    def __init__(self, asset: str, calls: int, cap: int, per_tool: str = "") -> None:
        self.asset, self.calls, self.cap, self.per_tool = asset, calls, cap, per_tool
        super().__init__(
            f"the plan of asset '{asset}' has {calls} tool calls, over its fan-out cap of "
            f"{cap} (max_tool_calls){f'; by tool: {per_tool}' if per_tool else ''}. No tool "
            "was run and the planner's answers are in the ledger, so a new run pays nothing "
            "for them: raise max_tool_calls, lower max_calls_per_row, or plan fewer rows per "
            "run (smaller partitions)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.asset, self.calls, self.cap, self.per_tool))


class ToolFailedError(LLMAssetsError):
    """A tool raised while running one planned call."""

    def __init__(self, tool: str, call_id: str, row_id: str, cause: str) -> None:
        self.tool, self.call_id, self.row_id, self.cause = tool, call_id, row_id, cause
        super().__init__(
            f"tool '{tool}' failed for call {call_id} (row {row_id}): {cause}. The step is "
            "retried by the tool op's RetryPolicy; once retries are exhausted, fix the tool or "
            "its data and re-execute the run from failure (only the failed calls run again)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tool, self.call_id, self.row_id, self.cause))
