"""Runs one ``LLMTask`` over the partitions of one step: render, look up, send, validate.

This module knows nothing of Dagster's decorators; ``llm_assets.factory`` wraps it, and
``fetcher`` holds its calls to the ledger and the figures they count. The flow:

1. check the columns the templates need (before any request);
2. render one request per row and hash it (the ledger key); identical requests collapse;
3. look every key up in the ledger in bulk (`ResponseLedger.answer` without a send);
4. estimate the cost of the misses and refuse to start over budget;
5. hand the misses to `ResponseLedger.answer`, which claims them, sends those this step won,
   records each response as it arrives and waits for the answers to requests another run
   claimed (the ledger owns paying once, and riding out an outage of its database);
6. validate each answer; an answer that does not match the schema gets a bounded number of
   repair requests; a row that still fails is kept as ``failed`` and quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llm_assets.batching import BatchMode, BatchPlan
from llm_assets.fetcher import Fetcher, StepInfo, gc_paused
from llm_assets.provenance import answer_content, parse_answer
from llm_assets.rendering import PlannedRow, check_columns, plan_chunks, repair_request
from llm_assets.resources.errors import BudgetExceededError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import ChatRequest, LLMResource
from llm_assets.summary import StepSummary, money
from llm_assets.tables import Resolution, RunStamp, TableBuilder
from llm_assets.task import LLMTask

__all__ = ["StepInfo", "StepOutput", "run_task"]


@dataclass
class StepOutput:
    """What one step produced, by partition key."""

    tables: dict[str | None, pd.DataFrame]
    quarantine: dict[str | None, pd.DataFrame]
    summaries: dict[str | None, StepSummary]
    task_version: str
    batch: BatchPlan | None = None

    @property
    def waiting(self) -> bool:
        """True when batch mode submitted (or waits for) batches, so no table was built."""
        return self.batch is not None and bool(self.batch.pending)

    @property
    def summary(self) -> StepSummary:
        """The step's totals over all its partitions."""
        return StepSummary.total(self.summaries.values())


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
    batch: BatchMode | None = None,
) -> StepOutput:
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
        batch: Batch mode: misses are submitted as batches instead of sent online.

    Returns:
        The output and quarantine tables and the figures of every partition.

    Raises:
        MissingColumnsError: Before any request, when a column is missing.
        BudgetExceededError: The estimate is over budget (nothing sent), or spend reached it
            (everything paid for is in the ledger).
        ProviderError: A failure that stops the step (bad key, no quota, unknown model).
    """
    for df in frames.values():
        check_columns(task, df, step.asset_key, step.upstream, passthrough_columns)
    model = task.model or llm.model
    task_version = task.version_for(llm.model)
    summaries = {partition: StepSummary() for partition in frames}
    fetcher = Fetcher(task, llm, ledger, step, summaries, log, max_cost_usd, task_version)
    if batch is not None:
        fetcher.assembling = batch.assembling(list(frames), task_version)
    stamp = RunStamp(step.run_id, task_version)
    planned = _plan_and_look_up(
        task, frames, model, llm.context_window(model), passthrough_columns, fetcher, stamp
    )
    resolved, requests, partition_of = planned.resolved, planned.requests, planned.partition_of
    unknown = [r for k, r in requests.items() if k not in resolved]
    estimated = fetcher.estimate(unknown, model, partition_of)
    if max_cost_usd is not None and estimated > max_cost_usd:
        raise BudgetExceededError(
            f"asset '{step.asset_key}' would send {len(unknown)} requests estimated at "
            f"{money(estimated)} (prompt estimate + "
            f"{task.output_tokens_for_estimates} output tokens each), over its budget of "
            f"{money(max_cost_usd)}; spent {money(0.0)}. Raise max_cost_usd, lower "
            "max_output_tokens or set expected_output_tokens on the task, or materialize fewer "
            "partitions at once",
            spent_usd=0.0,
            estimated_usd=estimated,
            budget_usd=max_cost_usd,
        )

    if unknown and batch is not None:
        plan = batch.plan(unknown, partition_of, task_version, log)
        resolved.update(plan.exhausted)
        if plan.pending:
            return StepOutput({}, {}, summaries, task_version, plan)
        unknown = []
    if unknown:
        answered = fetcher.fetch({request.key: request for request in unknown}, partition_of)
        unknown.clear()
        with gc_paused():
            for key, resolution in answered.items():
                resolution.settle(parse_answer(resolution.body, task.output_schema), key)
                if resolution.answer is not None:
                    del requests[key]  # its body is needed no more
        resolved.update(answered)
        del answered
    _repair(task, fetcher, requests, resolved, partition_of)
    with gc_paused():
        for position, row in planned.deferred:
            planned.builder.fill(position, row, resolved.get(row.key) if row.key else None)
        planned.deferred.clear()
        tables, quarantine = planned.builder.finish(summaries)
    if batch is not None:
        batch.mark_assembled(list(frames), task_version)
    return StepOutput(tables, quarantine, summaries, task_version)


@dataclass
class _Planned:
    """The step after rendering and the ledger lookup."""

    builder: TableBuilder
    #: Rows whose answer is not known yet (sent, repaired or quarantined later), by position.
    deferred: list[tuple[int, PlannedRow]]
    #: Settled ledger answers that failed validation (to repair), by key.
    resolved: dict[str, Resolution]
    #: Requests whose bodies are still needed: the misses (to send) and the failed answers.
    requests: dict[str, ChatRequest]
    #: The partition each request belongs to (the first that asks it).
    partition_of: dict[str, str | None]


def _plan_and_look_up(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    model: str,
    window: int | None,
    passthrough: tuple[str, ...],
    fetcher: Fetcher,
    stamp: RunStamp,
) -> _Planned:
    """Renders the rows and answers what the ledger holds, ``CHUNK_ROWS`` rows at a time.

    Only one chunk's request bodies and ledger entries are alive at once: a row the ledger
    answers goes straight into its table, so a fully cached step costs about the size of its
    table whatever the number of rows. A row repeating an earlier chunk's answered request
    looks it up again rather than keeping every answer.
    """
    requests: dict[str, ChatRequest] = {}
    planned = _Planned(
        TableBuilder(task, frames, requests, stamp, passthrough), [], {}, requests, {}
    )
    partition_of = planned.partition_of
    summaries = fetcher.summaries
    with gc_paused():
        for chunk_rows, chunk_requests in plan_chunks(task, frames, model, window, passthrough):
            fresh: dict[str, ChatRequest] = {}
            again: list[str] = []
            for row in chunk_rows:
                summaries[row.partition].rows += 1
                if row.key is None:
                    continue
                if row.key in partition_of:
                    summaries[row.partition].duplicates_collapsed += 1
                    if row.key not in fresh and row.key not in requests:
                        again.append(row.key)
                else:
                    partition_of[row.key] = row.partition
                    fresh[row.key] = chunk_requests[row.key]
            del chunk_requests
            hits = fetcher.lookup(fresh, partition_of)
            hits.update(fetcher.reload(again))
            for key, resolution in hits.items():
                resolution.settle(parse_answer(resolution.body, task.output_schema), key)
            for row in chunk_rows:
                res = hits.get(row.key) if row.key else None
                if row.key is None or (res is not None and res.answer is not None):
                    planned.builder.add(row, res)
                else:
                    planned.deferred.append((planned.builder.reserve(row), row))
            for key, request in fresh.items():
                res = hits.get(key)
                if res is None or res.answer is None:
                    requests[key] = request
                if res is not None and res.answer is None:
                    planned.resolved[key] = res
            del chunk_rows, fresh, hits
    return planned


def _repair(
    task: LLMTask,
    fetcher: Fetcher,
    requests: Mapping[str, ChatRequest],
    resolved: dict[str, Resolution],
    partition_of: Mapping[str, str | None],
) -> None:
    """Asks again, up to ``task.repair_attempts`` times, for answers that broke the schema."""
    current = dict(requests)
    for _ in range(task.repair_attempts):
        broken = {
            key: res
            for key, res in resolved.items()
            if res.error_class == "invalid_schema" and res.body is not None
        }
        if not broken:
            return
        follow_ups: dict[str, ChatRequest] = {}
        origin: dict[str, str] = {}
        for key, res in broken.items():
            request = repair_request(
                task, current[key], answer_content(res.body) or "", res.error or ""
            )
            follow_ups[request.key] = request
            origin[request.key] = key
        answers = fetcher.fetch(follow_ups, {k: partition_of.get(o) for k, o in origin.items()})
        for repair_key, answer in answers.items():
            key = origin[repair_key]
            answer.settle(parse_answer(answer.body, task.output_schema), repair_key)
            resolved[key] = resolved[key].followed_by(answer)
            current[key] = follow_ups[repair_key]
            fetcher.summaries[partition_of.get(key)].repairs += 1
