"""Runs one ``LLMTask`` over the partitions of one step: render, look up, send, validate.

This module knows nothing of Dagster's decorators; ``llm_assets.factory`` wraps it. The flow:

1. check the columns the templates need (before any request);
2. render one request per row and hash it (the ledger key); identical requests collapse;
3. look every key up in the ledger in bulk;
4. estimate the cost of the misses and refuse to start over budget;
5. claim the misses in the ledger and send those this step won, recording each response as it
   arrives; wait for the answers to requests another run claimed (or for its lease to run out);
6. validate each answer; an answer that does not match the schema gets a bounded number of
   repair requests; a row that still fails is kept as ``failed`` and quarantined.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from llm_assets.batching import BatchMode, BatchPlan
from llm_assets.planning import PlannedRow, check_columns, plan_chunks, repair_request
from llm_assets.progress import progress_logger
from llm_assets.provenance import BATCH_ID_FIELD, answer_content, parse_answer
from llm_assets.resources.errors import BudgetExceededError
from llm_assets.resources.ledger import LedgerEntry, ResponseLedger, claim_owner
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource, cost_usd
from llm_assets.summary import StepSummary, money
from llm_assets.tables import Resolution, RunStamp, TableBuilder
from llm_assets.task import LLMTask


@dataclass(frozen=True)
class StepInfo:
    """Where the work happens: for provenance columns and ledger entries."""

    run_id: str
    asset_key: str
    upstream: str = "upstream"


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


class _Fetcher:
    """Answers requests from the ledger or the endpoint, paying for each at most once."""

    def __init__(
        self,
        task: LLMTask,
        llm: LLMResource,
        ledger: ResponseLedger | None,
        step: StepInfo,
        summaries: dict[str | None, StepSummary],
        log: Any,
        max_cost_usd: float | None,
        task_version: str,
    ) -> None:
        self.task, self.llm, self.ledger, self.step = task, llm, ledger, step
        self.summaries, self.log, self.max_cost_usd = summaries, log, max_cost_usd
        self.task_version = task_version
        self.spent = 0.0
        self.estimated_usd = 0.0
        #: Batches whose answers this step assembles first: paid by their submitting run.
        self.assembling: frozenset[str] = frozenset()

    def fetch(
        self, requests: Mapping[str, ChatRequest], partition_of: Mapping[str, str | None]
    ) -> dict[str, Resolution]:
        answers = self.lookup(requests, partition_of)
        misses = [req for key, req in requests.items() if key not in answers]
        if misses:
            answers.update(self.send(misses, requests, partition_of))
        return answers

    def lookup(
        self, requests: Mapping[str, ChatRequest], partition_of: Mapping[str, str | None]
    ) -> dict[str, Resolution]:
        """The answers the ledger already holds, in one bulk query.

        An answer of a batch the step assembles counts as batch spend; any other answer is
        earlier work the ledger saved paying for again.
        """
        with _gc_paused():
            hits: dict[str, LedgerEntry] = (
                self.ledger.get_many(list(requests)) if self.ledger else {}
            )
            # Keyed by the caller's key strings, so each key is held once however many tables
            # and dicts refer to it.
            answers = {key: Resolution.from_entry(hits[key]) for key in requests if key in hits}
        discount = self.llm.batch_discount
        for key, entry in hits.items():
            part = self.summaries[partition_of.get(key)]
            batch_id = entry.response.get(BATCH_ID_FIELD) if entry.response else None
            if batch_id is not None and batch_id in self.assembling:
                part.batch_answered += 1
                part.batch_cost_usd += entry.cost_usd
                if discount > 0:
                    part.batch_saved_usd += entry.cost_usd * (1 / discount - 1)
            else:
                part.cache_hits += 1
                part.saved_usd += entry.cost_usd
        return answers

    def reload(self, keys: list[str]) -> dict[str, Resolution]:
        """Answers the ledger gave this step before (repeated rows): not counted again."""
        if not keys or not self.ledger:
            return {}
        with _gc_paused():
            found = self.ledger.get_many(keys)
            return {key: Resolution.from_entry(found[key]) for key in keys if key in found}

    def estimate(
        self, requests: list[ChatRequest], model: str, partition_of: Mapping[str, str | None]
    ) -> float:
        """Estimates the misses' cost, per owning partition; returns the step's estimate."""
        out = self.task.output_tokens_for_estimates
        total = 0.0
        for request in requests:
            cost = cost_usd(model, request.est_prompt_tokens, out, self.llm.prices)
            self.summaries[partition_of.get(request.key)].estimated_cost_usd += cost
            total += cost
        self.estimated_usd = total
        return total

    def send(
        self,
        misses: list[ChatRequest],
        requests: Mapping[str, ChatRequest],
        partition_of: Mapping[str, str | None],
    ) -> dict[str, Resolution]:
        """Pays for the misses this step wins the claim of; waits for the others' answers."""
        claims = self.ledger.claims(claim_owner(self.step.run_id)) if self.ledger else None
        if claims is None:
            return self._pay(misses, requests, partition_of)
        assert self.ledger is not None
        answers: dict[str, Resolution] = {}
        pending = {request.key: request for request in misses}
        waited = False
        with claims:
            while True:
                won = claims.claim(list(pending))
                mine = [pending.pop(key) for key in list(pending) if key in won]
                if mine:
                    answers.update(self._pay(mine, requests, partition_of))
                if not pending:
                    return answers
                if not waited:
                    waited = True
                    self.log.info(
                        f"{self.step.asset_key}: waiting for {len(pending)} requests another "
                        "run is paying for (claimed in the ledger); their answers are reused"
                    )
                time.sleep(self.ledger.claim_poll_s)
                landed = self.lookup({key: pending[key] for key in pending}, partition_of)
                for key in landed:
                    del pending[key]
                answers.update(landed)
                if not pending:
                    return answers

    def _pay(
        self,
        misses: list[ChatRequest],
        requests: Mapping[str, ChatRequest],
        partition_of: Mapping[str, str | None],
    ) -> dict[str, Resolution]:
        results: dict[str, ChatResult] = {}
        writer = self.ledger.writer() if self.ledger else None

        def on_result(result: ChatResult) -> None:
            results[result.key] = result
            self.spent += result.cost_usd
            part = self.summaries[partition_of.get(result.key)]
            part.requests_sent += 1
            part.input_tokens += result.input_tokens
            part.output_tokens += result.output_tokens
            part.cost_usd += result.cost_usd
            if result.ok and writer is not None:
                writer.add(self._entry(result, requests[result.key], partition_of.get(result.key)))

        def over_budget() -> bool:
            return self.max_cost_usd is not None and self.spent >= self.max_cost_usd

        progress = progress_logger(self.log, self.step.asset_key, len(misses))
        if writer is not None:
            with writer:
                self.llm.run_requests(misses, on_result, should_stop=over_budget, progress=progress)
        else:
            self.llm.run_requests(misses, on_result, should_stop=over_budget, progress=progress)
        if len(results) < len(misses):
            budget = self.max_cost_usd or 0.0
            raise BudgetExceededError(
                f"asset '{self.step.asset_key}' stopped sending after spending "
                f"{money(self.spent)} of its {money(budget)} budget (estimate for the step: "
                f"{money(self.estimated_usd)}); {len(misses) - len(results)} "
                "requests were not sent. Everything paid for is in the ledger: raise "
                "max_cost_usd and re-materialize to pay only for the rest",
                spent_usd=self.spent,
                estimated_usd=self.estimated_usd,
                budget_usd=budget,
            )
        return {key: Resolution.from_result(r, self.step.run_id) for key, r in results.items()}

    def _entry(self, result: ChatResult, request: ChatRequest, partition: str | None) -> Any:
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
            run_id=self.step.run_id,
            asset_key=self.step.asset_key,
            partition_key=partition,
            task_version=self.task_version,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while 100k-row tables of plain objects are built.

    Building many small dicts triggers full collections that find nothing (these objects hold
    no cycles) and cost more than the work itself; reference counting still frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    fetcher = _Fetcher(task, llm, ledger, step, summaries, log, max_cost_usd, task_version)
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
        answered = fetcher.send(unknown, requests, partition_of)
        unknown.clear()
        with _gc_paused():
            for key, resolution in answered.items():
                resolution.settle(parse_answer(resolution.body, task.output_schema), key)
                if resolution.answer is not None:
                    del requests[key]  # its body is needed no more
        resolved.update(answered)
        del answered
    _repair(task, fetcher, requests, resolved, partition_of)
    with _gc_paused():
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
    fetcher: _Fetcher,
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
    with _gc_paused():
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
    fetcher: _Fetcher,
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
