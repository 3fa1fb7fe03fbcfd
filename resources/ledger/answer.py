"""Look up, claim, send, record: how the ledger answers requests, paying for each at most once.

`answer_requests` is what `ResponseLedger.answer` runs:

1. look every request up in the ledger in bulk (answers of batches the caller assembles count
   as batch spend, any other answer as earlier work saved);
2. claim the misses, so that of several steps missing one request only one pays for it;
3. send the requests this call won through the caller's ``send``, recording each answer in the
   ledger as it arrives (a `LedgerWriter`, which keeps answers through a database outage);
4. wait for the answers of requests another step claimed, reusing them (or claim them when
   that step's lease runs out).

Lookups and claims that find the database unreachable are retried for up to
``outage_limit_s`` (`wait_out`); so are the writes, through the writer's journal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from llm_assets.resources.batch import BATCH_ID_FIELD
from llm_assets.resources.ledger.claims import RequestClaims, claim_owner
from llm_assets.resources.ledger.core import LedgerBackend, LedgerEntry
from llm_assets.resources.ledger.journal import LedgerJournal
from llm_assets.resources.ledger.outage import wait_out
from llm_assets.resources.ledger.writer import LedgerWriter
from llm_assets.resources.llm import ChatRequest, ChatResult

logger = logging.getLogger(__name__)


class Send(Protocol):
    """Sends ``requests``, calling ``on_result`` once per answer; stops when told to.

    `LLMResource.run_requests` is one.
    """

    def __call__(
        self,
        requests: list[ChatRequest],
        on_result: Callable[[ChatResult], None],
        *,
        should_stop: Callable[[], bool],
    ) -> object:
        """Send; ``should_stop`` is polled before each new request."""


@dataclass(frozen=True)
class Payer:
    """Who pays for what is sent: stamped on every entry recorded.

    Attributes:
        run_id: The Dagster run.
        asset_key: Slash-joined asset key path.
        task_version: Version of the task that built the requests.
    """

    run_id: str
    asset_key: str
    task_version: str


@dataclass
class LedgerFigures:
    """What answering did for one partition; names match the step's summary figures."""

    #: Answers from earlier work, and what they would have cost again.
    cache_hits: int = 0
    saved_usd: float = 0.0
    #: Answers of the batches the caller assembles, their price, and the discount's saving.
    batch_answered: int = 0
    batch_cost_usd: float = 0.0
    batch_saved_usd: float = 0.0
    #: Requests sent now and what they cost.
    requests_sent: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: Of their input tokens, those the provider read from its prompt cache, and its discount.
    cached_input_tokens: int = 0
    provider_cache_saved_usd: float = 0.0


@dataclass
class Answers:
    """The outcome of one `ResponseLedger.answer` call.

    Attributes:
        found: Answers the ledger held (earlier work, batches, other steps), by request key.
        paid: Results of the requests sent now (failed ones included), by request key.
        figures: Per partition (as given by ``partition_of``), what answering did.
        unsent: Requests not sent because ``budget_usd`` was reached.
        spent_usd: What the requests sent now cost.
    """

    found: dict[str, LedgerEntry] = field(default_factory=dict)
    paid: dict[str, ChatResult] = field(default_factory=dict)
    figures: dict[str | None, LedgerFigures] = field(default_factory=dict)
    unsent: int = 0
    spent_usd: float = 0.0

    def part(self, partition: str | None) -> LedgerFigures:
        """The figures of ``partition``, created on first use."""
        figures = self.figures.get(partition)
        if figures is None:
            figures = self.figures[partition] = LedgerFigures()
        return figures


@dataclass(frozen=True)
class LedgerAccess:
    """What `answer_requests` needs of a ledger; ``backend=None`` pays for every request."""

    backend: LedgerBackend | None
    claim_lease_s: float = 0.0
    claim_poll_s: float = 1.0
    outage_limit_s: float = 0.0
    journal_dir: Path | None = None


def answer_requests(
    access: LedgerAccess,
    requests: Mapping[str, ChatRequest],
    send: Send | None,
    *,
    payer: Payer,
    partition_of: Mapping[str, str | None] | None = None,
    budget_usd: float | None = None,
    assembling: frozenset[str] = frozenset(),
    batch_discount: float = 0.0,
    log: Any = None,
) -> Answers:
    """Answer ``requests`` (keyed by ledger key); see `ResponseLedger.answer`."""
    call = _Call(access, payer, partition_of or {}, assembling, batch_discount, log or logger)
    call.look_up(list(requests))
    if send is None:
        return call.answers
    misses = [request for key, request in requests.items() if key not in call.answers.found]
    if misses:
        call.claim_and_pay(misses, send, budget_usd)
    return call.answers


class _Call:
    def __init__(
        self,
        access: LedgerAccess,
        payer: Payer,
        partition_of: Mapping[str, str | None],
        assembling: frozenset[str],
        batch_discount: float,
        log: Any,
    ) -> None:
        self.access, self.payer, self.partition_of = access, payer, partition_of
        self.assembling, self.batch_discount, self.log = assembling, batch_discount, log
        self.answers = Answers()

    def look_up(self, keys: list[str]) -> list[str]:
        """Adds the ledger's answers for ``keys`` to ``found``; returns the keys answered."""
        backend = self.access.backend
        if backend is None or not keys:
            return []
        hits = wait_out(
            lambda: backend.get_many(keys),
            limit_s=self.access.outage_limit_s,
            what=f"look up {len(keys)} requests",
        )
        discount = self.batch_discount
        for key, entry in hits.items():
            part = self.answers.part(self.partition_of.get(key))
            batch_id = entry.response.get(BATCH_ID_FIELD) if entry.response else None
            if batch_id is not None and batch_id in self.assembling:
                part.batch_answered += 1
                part.batch_cost_usd += entry.cost_usd
                if discount > 0:
                    part.batch_saved_usd += entry.cost_usd * (1 / discount - 1)
            else:
                part.cache_hits += 1
                part.saved_usd += entry.cost_usd
        self.answers.found.update(hits)
        return list(hits)

    def claim_and_pay(
        self, misses: list[ChatRequest], send: Send, budget_usd: float | None
    ) -> None:
        """Pays for the misses this call wins the claim of; waits for the others' answers."""
        backend, access = self.access.backend, self.access
        if backend is None or access.claim_lease_s <= 0:
            self.pay(misses, send, budget_usd)
            return
        pending = {request.key: request for request in misses}
        waited = False
        with RequestClaims(backend, claim_owner(self.payer.run_id), access.claim_lease_s) as claims:
            while True:
                won = wait_out(
                    lambda: claims.claim(list(pending)),
                    limit_s=access.outage_limit_s,
                    what=f"claim {len(pending)} requests",
                )
                mine = [pending.pop(key) for key in list(pending) if key in won]
                if mine:
                    self.pay(mine, send, budget_usd)
                    if self.answers.unsent:
                        return
                if not pending:
                    return
                if not waited:
                    waited = True
                    self.log.info(
                        f"{self.payer.asset_key}: waiting for {len(pending)} requests another "
                        "run is paying for (claimed in the ledger); their answers are reused"
                    )
                time.sleep(access.claim_poll_s)
                for key in self.look_up(list(pending)):
                    del pending[key]
                if not pending:
                    return

    def pay(self, misses: list[ChatRequest], send: Send, budget_usd: float | None) -> None:
        """Sends ``misses``, recording each answer as it arrives; stops at the budget."""
        answers, by_key = self.answers, {request.key: request for request in misses}
        writer = self._writer()

        def on_result(result: ChatResult) -> None:
            answers.paid[result.key] = result
            answers.spent_usd += result.cost_usd
            part = answers.part(self.partition_of.get(result.key))
            part.requests_sent += 1
            part.input_tokens += result.input_tokens
            part.output_tokens += result.output_tokens
            part.cost_usd += result.cost_usd
            part.cached_input_tokens += result.cached_input_tokens
            part.provider_cache_saved_usd += result.cache_saving_usd
            if result.ok and writer is not None:
                writer.add(self._entry(result, by_key[result.key]))

        def should_stop() -> bool:
            over_budget = budget_usd is not None and answers.spent_usd >= budget_usd
            return over_budget or (writer is not None and writer.gave_up)

        if writer is None:
            send(misses, on_result, should_stop=should_stop)
        else:
            with writer:
                send(misses, on_result, should_stop=should_stop)
        answers.unsent += sum(1 for key in by_key if key not in answers.paid)

    def _writer(self) -> LedgerWriter | None:
        access = self.access
        if access.backend is None:
            return None
        journal = (
            LedgerJournal(access.journal_dir, claim_owner(self.payer.run_id))
            if access.journal_dir is not None
            else None
        )
        return LedgerWriter(access.backend, journal=journal, outage_limit_s=access.outage_limit_s)

    def _entry(self, result: ChatResult, request: ChatRequest) -> LedgerEntry:
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
            run_id=self.payer.run_id,
            asset_key=self.payer.asset_key,
            partition_key=self.partition_of.get(result.key),
            task_version=self.payer.task_version,
        )
