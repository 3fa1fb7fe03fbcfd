"""Runs one ``LLMTask`` over the partitions of one step: render, look up, send, validate.

This module knows nothing of Dagster's decorators; ``llm_assets.factory`` wraps it. The flow:

1. check the columns the templates need (before any request);
2. render one request per row and hash it (the ledger key);
3. look every key up in the ledger in bulk; identical requests collapse to one;
4. estimate the cost of the misses and refuse to start over budget;
5. send the misses, recording each response in the ledger as it arrives;
6. validate each answer against the schema; a bad row is kept as ``failed`` with its reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from llm_assets.provenance import (
    PROVENANCE_COLUMNS,
    STATUS_FAILED,
    STATUS_OK,
    empty_output_frame,
    parse_answer,
)
from llm_assets.task import LLMTask, request_hash
from resources.chat_types import ChatRequest, ChatResult, EngineStats
from resources.errors import BudgetExceededError, MissingColumnsError
from resources.ledger import LedgerEntry, ResponseLedger
from resources.llm import LLMResource
from resources.pricing import cost_usd

ROW_INDEX_COLUMN = "row_index"


@dataclass(frozen=True)
class StepInfo:
    """Where the work happens: for provenance columns and ledger entries."""

    run_id: str
    asset_key: str
    upstream: str = "upstream"


@dataclass
class StepSummary:
    """Totals of one step, turned into materialization metadata."""

    rows: int = 0
    ok: int = 0
    failed: int = 0
    requests_sent: int = 0
    cache_hits: int = 0
    duplicates_collapsed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    models: set[str] = field(default_factory=set)
    error_classes: dict[str, int] = field(default_factory=dict)

    @property
    def hit_ratio(self) -> float:
        """Share of unique requests answered by the ledger."""
        looked_up = self.cache_hits + self.requests_sent
        return self.cache_hits / looked_up if looked_up else 0.0


@dataclass
class _Row:
    partition: str | None
    row_id: Any
    extra: dict[str, Any]
    key: str | None = None
    pre_error: tuple[str, str] | None = None


def check_columns(
    task: LLMTask, df: pd.DataFrame, step: StepInfo, passthrough: tuple[str, ...] = ()
) -> None:
    """Raises ``MissingColumnsError`` when ``df`` lacks a column the task reads."""
    needed = dict.fromkeys([*task.required_columns, *passthrough])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MissingColumnsError(
            step.asset_key, missing, [str(c) for c in df.columns], step.upstream
        )


def _plan_rows(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    model: str,
    window: int | None,
    passthrough: tuple[str, ...],
) -> tuple[list[_Row], dict[str, ChatRequest]]:
    rows: list[_Row] = []
    requests: dict[str, ChatRequest] = {}
    variables = task.template_variables
    sources = [task.columns.get(v, v) for v in variables]
    for partition, df in frames.items():
        ids = df[task.id_column].tolist() if task.id_column else list(range(len(df)))
        value_columns = [df[c].tolist() for c in sources]
        extra_columns = [df[c].tolist() for c in passthrough]
        for i, row_id in enumerate(ids):
            extra = {c: col[i] for c, col in zip(passthrough, extra_columns, strict=True)}
            values = {v: _text(col[i]) for v, col in zip(variables, value_columns, strict=True)}
            messages = task.render_messages(values)
            est = task.estimate_prompt_tokens(messages)
            if window is not None and est + task.max_output_tokens > window:
                error = _over_window(est, task.max_output_tokens, window, model)
                rows.append(_Row(partition, row_id, extra, pre_error=error))
                continue
            body = task.request_body(messages, model)
            key = request_hash(body)
            requests.setdefault(key, ChatRequest(key=key, body=body, est_prompt_tokens=est))
            rows.append(_Row(partition, row_id, extra, key=key))
    return rows, requests


def _over_window(est: int, max_output: int, window: int, model: str) -> tuple[str, str]:
    return "context_length_exceeded", (
        f"the prompt is about {est} tokens; with max_output_tokens={max_output} it is over "
        f"the {window}-token context window of '{model}'. Shorten the input or use a model "
        "with a larger window"
    )


def _text(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def run_task(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    *,
    llm: LLMResource,
    ledger: ResponseLedger | None,
    step: StepInfo,
    log: logging.Logger | Any,
    max_cost_usd: float | None = None,
    passthrough_columns: tuple[str, ...] = (),
) -> tuple[dict[str | None, pd.DataFrame], StepSummary]:
    """Answers every row of every partition in ``frames``.

    Args:
        task: The task.
        frames: Upstream rows by partition key (``None`` for an unpartitioned asset).
        llm: The endpoint.
        ledger: The response ledger, or ``None`` to pay for every request.
        step: Run and asset identity for provenance.
        log: Where progress lines go.
        max_cost_usd: Budget for this step's new spend; ``None`` for no budget.
        passthrough_columns: Upstream columns copied to the output.

    Returns:
        The output table by partition key, and the step's totals.

    Raises:
        MissingColumnsError: Before any request, when a column is missing.
        BudgetExceededError: The estimate is over budget (nothing sent), or spend reached it
            (everything paid for is in the ledger).
        ProviderError: A failure that stops the step (bad key, no quota, unknown model).
    """
    for df in frames.values():
        check_columns(task, df, step, passthrough_columns)
    model = task.model or llm.model
    rows, requests = _plan_rows(task, frames, model, llm.context_window(model), passthrough_columns)
    summary = StepSummary(rows=len(rows))
    summary.duplicates_collapsed = sum(1 for r in rows if r.key) - len(requests)

    hits: dict[str, LedgerEntry] = ledger.get_many(list(requests)) if ledger else {}
    misses = [req for key, req in requests.items() if key not in hits]
    summary.cache_hits = len(hits)
    summary.saved_usd = sum(entry.cost_usd for entry in hits.values())
    summary.estimated_cost_usd = sum(
        cost_usd(model, r.est_prompt_tokens, task.output_tokens_for_estimates, llm.prices)
        for r in misses
    )
    if max_cost_usd is not None and summary.estimated_cost_usd > max_cost_usd:
        raise BudgetExceededError(
            f"asset '{step.asset_key}' would send {len(misses)} requests estimated at "
            f"${summary.estimated_cost_usd:.4f} (prompt estimate + "
            f"{task.output_tokens_for_estimates} output tokens each), over its budget of "
            f"${max_cost_usd:.4f}; spent $0.0000. Raise max_cost_usd, lower max_output_tokens "
            "or set expected_output_tokens on the task, or materialize fewer partitions at once",
            spent_usd=0.0,
            estimated_usd=summary.estimated_cost_usd,
            budget_usd=max_cost_usd,
        )

    results: dict[str, ChatResult] = {}
    spent = [0.0]
    writer = ledger.writer() if ledger else None
    partition_of = {r.key: r.partition for r in rows if r.key}

    def on_result(result: ChatResult) -> None:
        results[result.key] = result
        spent[0] += result.cost_usd
        if result.ok and writer is not None:
            writer.add(
                _ledger_entry(
                    result, requests[result.key], task, step, partition_of.get(result.key)
                )
            )

    def over_budget() -> bool:
        return max_cost_usd is not None and spent[0] >= max_cost_usd

    progress = _progress_logger(log, step.asset_key, len(misses))
    stats = EngineStats()
    if misses:
        if writer is not None:
            with writer:
                stats = llm.run_requests(
                    misses, on_result, should_stop=over_budget, progress=progress
                )
        else:
            stats = llm.run_requests(misses, on_result, should_stop=over_budget, progress=progress)
    summary.requests_sent = stats.done
    summary.input_tokens = stats.input_tokens
    summary.output_tokens = stats.output_tokens
    summary.cost_usd = stats.cost_usd
    if len(results) < len(misses):
        raise BudgetExceededError(
            f"asset '{step.asset_key}' stopped sending after spending ${spent[0]:.4f} of its "
            f"${max_cost_usd:.4f} budget (estimate for the step: "
            f"${summary.estimated_cost_usd:.4f}); {len(misses) - len(results)} requests were "
            "not sent. Everything paid for is in the ledger: raise max_cost_usd and "
            "re-materialize to pay only for the rest",
            spent_usd=spent[0],
            estimated_usd=summary.estimated_cost_usd,
            budget_usd=max_cost_usd or 0.0,
        )
    outputs = _assemble(task, frames, rows, hits, results, step, summary, passthrough_columns)
    return outputs, summary


def _ledger_entry(
    result: ChatResult,
    request: ChatRequest,
    task: LLMTask,
    step: StepInfo,
    partition: str | None,
) -> LedgerEntry:
    return LedgerEntry(
        key=result.key,
        response=result.body or {},
        request=request.body,
        model=result.model,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
        latency_s=result.latency_s,
        created_at=datetime.now(UTC),
        run_id=step.run_id,
        asset_key=step.asset_key,
        partition_key=partition,
        task_version=task.version,
    )


def _assemble(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    rows: list[_Row],
    hits: Mapping[str, LedgerEntry],
    results: Mapping[str, ChatResult],
    step: StepInfo,
    summary: StepSummary,
    passthrough: tuple[str, ...],
) -> dict[str | None, pd.DataFrame]:
    id_column = task.id_column or ROW_INDEX_COLUMN
    field_names = list(task.output_schema.model_fields)
    parsed: dict[str, tuple[dict[str, Any] | None, str | None, str | None]] = {}
    records: dict[str | None, list[dict[str, Any]]] = {p: [] for p in frames}
    for row in rows:
        record: dict[str, Any] = {id_column: row.row_id, **row.extra}
        error_class, error, answer = None, None, None
        meta: dict[str, Any] = {"llm_request_hash": row.key, "llm_cached": False}
        if row.pre_error is not None:
            error_class, error = row.pre_error
        elif row.key in hits:
            entry = hits[row.key]
            meta.update(
                llm_model=entry.model,
                llm_input_tokens=entry.input_tokens,
                llm_output_tokens=entry.output_tokens,
                llm_cost_usd=entry.cost_usd,
                llm_latency_s=entry.latency_s,
                llm_cached=True,
                llm_paid_by_run_id=entry.run_id,
            )
            if row.key not in parsed:
                parsed[row.key] = parse_answer(entry.response, task.output_schema)
            answer, error_class, error = parsed[row.key]
        else:
            result = results[row.key]  # type: ignore[index]
            meta.update(
                llm_model=result.model,
                llm_input_tokens=result.input_tokens,
                llm_output_tokens=result.output_tokens,
                llm_cost_usd=result.cost_usd,
                llm_latency_s=result.latency_s,
                llm_paid_by_run_id=step.run_id if result.ok else None,
            )
            if result.ok:
                if row.key not in parsed:
                    parsed[row.key] = parse_answer(result.body, task.output_schema)
                answer, error_class, error = parsed[row.key]
            else:
                error_class, error = result.error_class, result.error
        for name in field_names:
            record[name] = answer.get(name) if answer else None
        record.update(meta)
        record["llm_status"] = STATUS_OK if answer is not None else STATUS_FAILED
        record["llm_error"] = error
        record["llm_error_class"] = error_class
        record["llm_task_version"] = task.version
        record["llm_run_id"] = step.run_id
        if answer is not None:
            summary.ok += 1
        else:
            summary.failed += 1
            name = error_class or "error"
            summary.error_classes[name] = summary.error_classes.get(name, 0) + 1
        if meta.get("llm_model"):
            summary.models.add(meta["llm_model"])
        records[row.partition].append(record)
    return {p: _to_frame(recs, id_column, task, passthrough) for p, recs in records.items()}


def _to_frame(
    records: list[dict[str, Any]], id_column: str, task: LLMTask, passthrough: tuple[str, ...]
) -> pd.DataFrame:
    empty = empty_output_frame(id_column, task.output_schema, passthrough)
    if not records:
        return empty
    df = pd.DataFrame.from_records(records, columns=list(empty.columns))
    defaults = {
        "llm_input_tokens": 0,
        "llm_output_tokens": 0,
        "llm_cost_usd": 0.0,
        "llm_latency_s": 0.0,
        "llm_cached": False,
    }
    df = df.fillna(value=defaults)
    return df.astype(PROVENANCE_COLUMNS)


def _progress_logger(log: Any, asset: str, total: int) -> Callable[[EngineStats, int], None]:
    def report(stats: EngineStats, concurrency: int) -> None:
        elapsed = max(1e-9, time.monotonic() - stats.started_at)
        per_min = stats.done / elapsed * 60
        remaining = total - stats.done
        eta = remaining / (stats.done / elapsed) if stats.done else float("inf")
        eta_txt = f"{eta:.0f}s" if math.isfinite(eta) else "?"
        log.info(
            f"{asset}: {stats.done}/{total} requests, {per_min:.0f} req/min, "
            f"{stats.input_tokens + stats.output_tokens} tokens, ${stats.cost_usd:.4f}, "
            f"ETA {eta_txt}, concurrency {concurrency}, 429s {stats.rate_limited}, "
            f"retries {stats.retries}"
        )

    return report
