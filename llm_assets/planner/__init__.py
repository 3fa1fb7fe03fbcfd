"""Planner assets: an LLM plans typed tool calls, run in parallel as dynamic outputs.

``@tool`` registers a typed function; ``planned_asset`` builds the graph-backed asset whose
planner proposes calls to an allowlist of tools, validated (``Plan``, ``ToolCall``,
``CheckedCall``) before anything runs.
"""

from llm_assets.planner.errors import PlanTooLargeError, ToolDefinitionError, ToolFailedError
from llm_assets.planner.factory import DEFAULT_TOOL_RETRY, planned_asset
from llm_assets.planner.plan import CheckedCall, Plan, RowPlan, ToolCall
from llm_assets.planner.rows import (
    PLANNER_HASH_COLUMN,
    TOOL_CALLS_COLUMN,
    TOOL_RESULTS_COLUMN,
    ToolOutcome,
)
from llm_assets.planner.task import PLANNER_SYSTEM_PROMPT, planner_task
from llm_assets.planner.tools import Tool, allowlist, registered_tool, tool

__all__ = [  # noqa: RUF022 - plain sorted order
    "CheckedCall",
    "DEFAULT_TOOL_RETRY",
    "PLANNER_HASH_COLUMN",
    "PLANNER_SYSTEM_PROMPT",
    "Plan",
    "PlanTooLargeError",
    "RowPlan",
    "TOOL_CALLS_COLUMN",
    "TOOL_RESULTS_COLUMN",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "ToolFailedError",
    "ToolOutcome",
    "allowlist",
    "planned_asset",
    "planner_task",
    "registered_tool",
    "tool",
]
