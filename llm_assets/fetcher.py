"""Answers a step's requests through the ledger and counts its figures, partition by partition.

`Fetcher` is how ``runner`` reaches `ResponseLedger.answer`: it looks requests up, pays for the
misses within the step's budget, and adds each call's ``LedgerFigures`` to the summary of the
partition they belong to. ``StepInfo`` names the run and asset it pays for.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from llm_assets.progress import progress_logger
from llm_assets.resources.errors import BudgetExceededError
from llm_assets.resources.ledger import Answers, LedgerFigures, Payer, ResponseLedger, Send
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource
from llm_assets.summary import StepSummary, money
from llm_assets.tables import Resolution
from llm_assets.task import LLMTask


@dataclass(frozen=True)
class StepInfo:
    """Where the work happens: for provenance columns and ledger entries."""

    run_id: str
    asset_key: str
    upstream: str = "upstream"


#: Without a ledger every request is paid for: nothing is looked up, claimed or recorded.
_NO_LEDGER = ResponseLedger(enabled=False)


class Fetcher:
    """Answers requests through the ledger (`ResponseLedger.answer`) and counts the figures."""

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
        self.task, self.llm, self.step = task, llm, step
        self.ledger = ledger if ledger is not None else _NO_LEDGER
        self.summaries, self.log, self.max_cost_usd = summaries, log, max_cost_usd
        self.payer = Payer(step.run_id, step.asset_key, task_version)
        self.spent = 0.0
        self.estimated_usd = 0.0
        #: Batches whose answers this step assembles first: paid by their submitting run.
        self.assembling: frozenset[str] = frozenset()

    def fetch(
        self, requests: Mapping[str, ChatRequest], partition_of: Mapping[str, str | None]
    ) -> dict[str, Resolution]:
        """Answers from the ledger, or paid for now: each request paid for at most once."""
        budget = None if self.max_cost_usd is None else self.max_cost_usd - self.spent
        answers = self._answer(requests, partition_of, self._send, budget)
        self.spent += answers.spent_usd
        if answers.unsent:
            budget_usd = self.max_cost_usd or 0.0
            raise BudgetExceededError(
                f"asset '{self.step.asset_key}' stopped sending after spending "
                f"{money(self.spent)} of its {money(budget_usd)} budget (estimate for the step: "
                f"{money(self.estimated_usd)}); {answers.unsent} "
                "requests were not sent. Everything paid for is in the ledger: raise "
                "max_cost_usd and re-materialize to pay only for the rest",
                spent_usd=self.spent,
                estimated_usd=self.estimated_usd,
                budget_usd=budget_usd,
            )
        with gc_paused():
            out = {key: Resolution.from_entry(entry) for key, entry in answers.found.items()}
            run_id = self.step.run_id
            out.update((k, Resolution.from_result(r, run_id)) for k, r in answers.paid.items())
        return out

    def lookup(
        self, requests: Mapping[str, ChatRequest], partition_of: Mapping[str, str | None]
    ) -> dict[str, Resolution]:
        """The answers the ledger already holds, in one bulk query.

        An answer of a batch the step assembles counts as batch spend; any other answer is
        earlier work the ledger saved paying for again.
        """
        with gc_paused():
            found = self._answer(requests, partition_of, None, None).found
            # Keyed by the caller's key strings, so each key is held once however many tables
            # and dicts refer to it.
            return {key: Resolution.from_entry(found[key]) for key in requests if key in found}

    def reload(self, keys: list[str]) -> dict[str, Resolution]:
        """Answers the ledger gave this step before (repeated rows): not counted again."""
        if not keys or self.ledger is _NO_LEDGER:
            return {}
        with gc_paused():
            found = self.ledger.get_many(keys)
            return {key: Resolution.from_entry(found[key]) for key in keys if key in found}

    def estimate(
        self, requests: list[ChatRequest], model: str, partition_of: Mapping[str, str | None]
    ) -> float:
        """Estimates the misses' cost, per owning partition; returns the step's estimate."""
        out = self.task.output_tokens_for_estimates
        total, prices = 0.0, self.llm.price_book
        for request in requests:
            cost = prices.cost(model, request.est_prompt_tokens, out)
            self.summaries[partition_of.get(request.key)].estimated_cost_usd += cost
            total += cost
        self.estimated_usd = total
        return total

    def _answer(
        self,
        requests: Mapping[str, ChatRequest],
        partition_of: Mapping[str, str | None],
        send: Send | None,
        budget_usd: float | None,
    ) -> Answers:
        answers = self.ledger.answer(
            requests,
            send,
            payer=self.payer,
            partition_of=partition_of,
            budget_usd=budget_usd,
            assembling=self.assembling,
            batch_discount=self.llm.batch_discount,
            log=self.log,
        )
        for partition, figures in answers.figures.items():
            summary = self.summaries[partition]
            for name in _FIGURES:
                setattr(summary, name, getattr(summary, name) + getattr(figures, name))
        prices = self.llm.price_book
        for key, result in answers.paid.items():
            if result.ok and not prices.knows(result.model):
                self.summaries[partition_of.get(key)].unpriced_models.add(result.model)
        return answers

    def _send(
        self,
        requests: list[ChatRequest],
        on_result: Callable[[ChatResult], None],
        *,
        should_stop: Callable[[], bool],
    ) -> object:
        progress = progress_logger(self.log, self.step.asset_key, len(requests))
        return self.llm.run_requests(
            requests, on_result, should_stop=should_stop, progress=progress
        )


_FIGURES = tuple(f.name for f in fields(LedgerFigures))


@contextmanager
def gc_paused() -> Iterator[None]:
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
