"""What an ``llm_asset`` shows in the UI: its description, and a readable preview of its rows.

The description is Markdown: an introduction, the model and endpoint, the system and user
prompt templates, the output schema as JSON Schema, and what the cost estimate assumes.
``resolve_model_versions`` renders it again once the ``LLMResource`` is known, so the model
and endpoint named are the ones used. The table schemas describe every column, the provenance
ones included. The preview shows a partition's first rows as a person reads them (lists
joined, no Python reprs) and the ``trace`` command for its first row.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.provenance import (
    PROVENANCE_COLUMNS,
    PROVENANCE_DESCRIPTIONS,
    QUARANTINE_COLUMNS,
    QUARANTINE_DESCRIPTIONS,
)
from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.resources.llm import PriceBook
from llm_assets.results import Report, markdown_preview
from llm_assets.runner import StepOutput
from llm_assets.summary import money
from llm_assets.task import LLMTask

RESOURCE_MODEL = "(LLMResource.model)"
RESOURCE_ENDPOINT = "(LLMResource.base_url)"


def task_description(
    task: LLMTask,
    *,
    upstream: str,
    intro: str | None = None,
    model: str | None = None,
    endpoint: str | None = None,
    prices: PriceBook | None = None,
    asset: str | None = None,
) -> str:
    """Markdown describing ``task`` for the asset's description.

    Args:
        task: The task the asset answers.
        upstream: The upstream asset, as a user string.
        intro: The user's own description, shown first; a default sentence otherwise.
        model: The model sent; defaults to the task's, else "(LLMResource.model)".
        endpoint: The endpoint kind (``openai``, ``vllm``, ...), when known.
        prices: What calls cost (the ``LLMResource``'s), for the cost of a row before launching.
        asset: The asset's name, for the forecast command shown.

    Returns:
        The Markdown text.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Label(BaseModel):
        ...     label: str
        >>> task = LLMTask(name="t", user_prompt="Text: {text}", output_schema=Label)
        >>> text = task_description(task, upstream="texts", model="gpt-4o-mini")
        >>> "`gpt-4o-mini`" in text and "Text: {text}" in text and '"label"' in text
        True
    """
    shown_model = model or task.model or RESOURCE_MODEL
    lines = [
        intro or f"LLM task `{task.name}`: one request per row of `{upstream}`.",
        "",
        f"**Model:** `{shown_model}` · **Endpoint:** `{endpoint or RESOURCE_ENDPOINT}` · "
        f"**Task version:** `{task.version_for(model) if model else task.version}`",
        "",
        "**System prompt**",
        "",
        _fenced(task.system_prompt or "(none)", "text"),
        "",
        "**User prompt**",
        "",
        _fenced(task.user_prompt, "text"),
        "",
        f"**Output schema** (`{task.output_schema.__name__}`)",
        "",
        _fenced(json.dumps(task.json_schema, indent=2, ensure_ascii=False), "json"),
        "",
        estimate_note(task),
    ]
    sent = model or task.model
    if sent is not None:
        lines += ["", before_launch(task, sent, prices or PriceBook(), asset or task.name)]
    return "\n".join(lines)


def before_launch(task: LLMTask, model: str, prices: PriceBook, asset: str) -> str:
    """What a row will cost at ``model``'s price, and how to forecast a whole partition.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Label(BaseModel):
        ...     label: str
        >>> task = LLMTask(name="t", user_prompt="Text: {text}", output_schema=Label,
        ...                expected_output_tokens=20)
        >>> before_launch(task, "gpt-4o-mini", PriceBook(), "t")[:60]
        '**Before you launch:** on `gpt-4o-mini` a row costs about $0'
    """
    messages = [
        {"role": "system", "content": task.system_prompt},
        {"role": "user", "content": task.user_prompt},
    ]
    prompt = task.estimate_prompt_tokens([m for m in messages if m["content"]])
    output = task.output_tokens_for_estimates
    if not prices.knows(model):
        cost = f"`{model}` has no price (set `LLMResource.prices`)"
    else:
        per_row = prices.cost(model, prompt, output)
        cost = (
            f"on `{model}` a row costs about {money(per_row)} plus its own text "
            f"({prompt:,} prompt tokens of templates and schema, counted locally as OpenAI bills "
            f"a strict schema, and {output:,} output tokens), "
            f"{money(per_row * 1000)} per 1,000 rows"
        )
    return (
        f"**Before you launch:** {cost}. Rows the ledger already answers cost nothing: "
        f"`python -m llm_assets estimate {asset} --partition <key>` (or the `llm_estimate` "
        "job) forecasts a partition from its rows and the ledger, sending nothing."
    )


def estimate_note(task: LLMTask) -> str:
    """What a materialization's ``estimated_cost_usd`` assumes, next to the paid ``cost_usd``.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Label(BaseModel):
        ...     label: str
        >>> task = LLMTask(name="t", user_prompt="{text}", output_schema=Label)
        >>> "512 output tokens per request (`max_output_tokens`" in estimate_note(task)
        True
    """
    if task.expected_output_tokens is None:
        basis = "`max_output_tokens`, an upper bound: set `expected_output_tokens` on the task"
        basis += " for a closer estimate"
    else:
        basis = "the task's `expected_output_tokens`"
    return (
        "**Cost figures:** `cost_usd` is what a materialization paid. `estimated_cost_usd` is "
        "the estimate made before sending, which the budget (`max_cost_usd`) is checked "
        "against: the requests the ledger could not answer, their prompts counted locally and "
        f"{task.output_tokens_for_estimates} output tokens per request ({basis})."
    )


def readable_cell(value: Any) -> str:
    """One table value as a person reads it: lists joined with ``; ``, no Python reprs.

    Examples:
        >>> readable_cell(["battery", "fit"]), readable_cell(None), readable_cell({"a": 1})
        ('battery; fit', '', '{"a": 1}')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()  # numpy arrays (list columns read back from Parquet)
    if isinstance(value, (list, tuple)):
        return "; ".join(readable_cell(item) for item in value)
    if value is pd.NA or value is pd.NaT:
        return ""
    return str(value)


def readable_rows(table: pd.DataFrame, columns: Sequence[str], limit: int = 5) -> pd.DataFrame:
    """The first ``limit`` rows of ``columns`` (those present), every value readable text."""
    shown = [c for c in columns if c in table.columns]
    return table.head(limit)[shown].map(readable_cell)


def trace_hint(asset: str, partition: str | None, row_id: Any) -> str:
    """The line under a preview that tells how to trace a row.

    Examples:
        >>> trace_hint("review_insights", "2026-11-01", "2026-11-01-0000")
        '**Trace a row** (from the project directory): `python -m llm_assets trace \
review_insights --partition 2026-11-01 --row 2026-11-01-0000`'
    """
    command = ["python -m llm_assets trace", shlex.quote(asset)]
    if partition is not None:
        command.append(f"--partition {shlex.quote(partition)}")
    command.append(f"--row {shlex.quote(str(row_id))}")
    return f"**Trace a row** (from the project directory): `{' '.join(command)}`"


def _fenced(text: str, language: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"


def output_column_schema(
    task: LLMTask, passthrough: Sequence[str] = (), *, review: object | None = None
) -> dg.TableSchema:
    """The table schema of an ``llm_asset``: id, answer fields, provenance (and review) columns."""
    columns = [dg.TableColumn(task.id_column or ROW_INDEX_COLUMN, "object", "input row id")]
    columns += [dg.TableColumn(name, "object", "copied from upstream") for name in passthrough]
    for name, info in task.output_schema.model_fields.items():
        annotation = getattr(info.annotation, "__name__", str(info.annotation))
        columns.append(dg.TableColumn(name, annotation, info.description or "LLM answer field"))
    columns += [
        dg.TableColumn(name, dtype, PROVENANCE_DESCRIPTIONS[name])
        for name, dtype in PROVENANCE_COLUMNS.items()
    ]
    if review is not None:
        columns += [
            dg.TableColumn(
                "review_status",
                "string",
                "not_required, pending, approved, edited or rejected (the review gate)",
            ),
            dg.TableColumn("review_reason", "string", "why the review policy flagged the row"),
        ]
    return dg.TableSchema(columns=columns)


def quarantine_column_schema(task: LLMTask) -> dg.TableSchema:
    """The table schema of an ``llm_asset``'s quarantine table."""
    columns = [dg.TableColumn(task.id_column or ROW_INDEX_COLUMN, "object", "input row id")]
    columns += [
        dg.TableColumn(name, dtype, QUARANTINE_DESCRIPTIONS[name])
        for name, dtype in QUARANTINE_COLUMNS.items()
    ]
    return dg.TableSchema(columns=columns)


def preview_report(
    report: Report | None, output: StepOutput, asset: str, columns: Sequence[str]
) -> Report:
    """``report`` plus a readable ``preview`` of each partition's table and how to trace a row.

    The table of each partition is the one ``output`` holds, so its partition key is known.
    """

    def _report(table: pd.DataFrame) -> dict[str, Any]:
        partition = next((k for k, t in output.tables.items() if t is table), None)
        preview = markdown_preview(readable_rows(table, columns), columns)
        if len(table):
            preview += "\n\n" + trace_hint(asset, partition, table[columns[0]].iloc[0])
        return {"preview": dg.MetadataValue.md(preview), **(report(table) if report else {})}

    return _report
