"""The response ledger: a durable, content-addressed store of paid-for LLM responses.

An asset hands its requests to `ResponseLedger.answer`, which looks every request key up,
claims and sends only the misses, and records each response as it arrives. A crash loses at
most the calls in flight; a re-run pays only for rows not yet in the ledger; a database outage
shorter than ``outage_limit_s`` loses nothing.

The resource is the ledger's face for assets; its fields are in ``config``, and building
blocks live in ``answer`` (the flow), ``core`` (entry, backend interface), ``claims``,
``writer``, ``journal``, ``outage``, ``sqlite`` and ``postgres``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from llm_assets.resources.batch import BatchStore, PostgresBatchStore, SQLiteBatchStore
from llm_assets.resources.database import PostgresDatabase
from llm_assets.resources.ledger.answer import Answers, LedgerAccess, Payer, Send, answer_requests
from llm_assets.resources.ledger.claims import RequestClaims, claim_owner
from llm_assets.resources.ledger.config import ResponseLedgerConfig
from llm_assets.resources.ledger.core import LedgerBackend, LedgerEntry
from llm_assets.resources.ledger.journal import LedgerJournal, replay_journals
from llm_assets.resources.ledger.location import journal_dir, sqlite_file
from llm_assets.resources.ledger.postgres import PostgresLedgerBackend
from llm_assets.resources.ledger.sqlite import SQLiteLedgerBackend
from llm_assets.resources.ledger.writer import LedgerWriter
from llm_assets.resources.llm import ChatRequest
from llm_assets.resources.review import ReviewStore
from llm_assets.resources.sqlite import SQLiteDatabase

logger = logging.getLogger(__name__)

_BUILD_LOCK = threading.Lock()


class ResponseLedger(ResponseLedgerConfig):
    """Durable ledger of paid-for LLM responses, keyed by the sha256 of the canonical request.

    `answer` looks every request up, sends only the misses and records each response as it
    arrives: no token is paid for twice and every row can be traced back to the run, asset and
    partition that paid for it. SQLite suits one host (several processes may write at once);
    PostgreSQL suits a shared deployment.

    Steps that miss the same request at once pay for it once: each claims its misses before
    sending (a lease of ``claim_lease_s`` seconds, renewed while it runs) and waits for the
    answers to requests another step claimed.

    A database outage (a restart, a failover) shorter than ``outage_limit_s`` fails nothing:
    lookups and claims wait for it, and answers arriving meanwhile are kept in memory and in a
    journal under `journal_dir` until they can be written. A longer one fails the step with
    `LedgerUnavailableError`, its answers in the journal; the next step that opens the ledger
    records them before looking anything up, so the rerun pays only for rows never answered.

    Outside Dagster execution (a CLI, a notebook) construct it directly and call `get_backend`.

    Examples:
        .. code-block:: python

            import dagster as dg

            from llm_assets.resources.ledger import Payer, ResponseLedger
            from llm_assets.resources.llm import ChatRequest, LLMResource


            @dg.asset
            def review_insights(
                context: dg.AssetExecutionContext, llm: LLMResource, ledger: ResponseLedger
            ) -> dg.MaterializeResult:
                requests: dict[str, ChatRequest] = {}  # by ledger key, rendered from the rows
                answers = ledger.answer(
                    requests,
                    llm.run_requests,
                    payer=Payer(context.run_id, "review_insights", task_version="v1"),
                )
                return dg.MaterializeResult(
                    metadata={"reused": len(answers.found), "paid": len(answers.paid)}
                )


            defs = dg.Definitions(
                assets=[review_insights],
                resources={
                    "llm": LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY")),
                    "ledger": ResponseLedger(
                        backend="postgres", postgres_url=dg.EnvVar("DAGSTER_PG_URL")
                    ),
                },
            )
    """

    _backend: LedgerBackend | None = PrivateAttr(default=None)
    _batch_store: BatchStore | None = PrivateAttr(default=None)
    _review_store: ReviewStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Open the backend (creating its table if needed) before the run uses it."""
        if self.enabled:
            self.get_backend()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the backend's and the batch store's connections."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        for store in (self._batch_store, self._review_store):
            if store is not None:
                store.close()
        self._batch_store = self._review_store = None

    def get_backend(self) -> LedgerBackend:
        """Return the backend, opening it on first use (also when ``enabled`` is False)."""
        if self._backend is None:
            with _BUILD_LOCK:
                if self._backend is None:
                    backend = self._build_backend()
                    replayed = replay_journals(self.journal_path(), backend)
                    if replayed:
                        logger.info("recorded %d answers kept through an outage", replayed)
                    self._backend = backend
        return self._backend

    def answer(
        self,
        requests: Mapping[str, ChatRequest],
        send: Send | None = None,
        *,
        payer: Payer,
        partition_of: Mapping[str, str | None] | None = None,
        budget_usd: float | None = None,
        assembling: frozenset[str] = frozenset(),
        batch_discount: float = 0.0,
        log: Any = None,
    ) -> Answers:
        """Answer ``requests``: look up, claim the misses, send those won, record each answer.

        Every request is paid for at most once, across runs, processes and hosts: answers in
        the ledger are reused, a miss another step is paying for right now is waited for, and
        each answer paid here is recorded the moment it arrives. Without ``send`` it only
        looks up. A disabled ledger answers nothing and records nothing.

        Args:
            requests: The requests, by ledger key.
            send: Sends requests and reports each result (`LLMResource.run_requests` does);
                ``None`` looks up only.
            payer: Run, asset and task version stamped on every entry recorded.
            partition_of: The partition each key counts for, in ``Answers.figures``.
            budget_usd: Stop sending once the requests sent by this call cost this much;
                ``Answers.unsent`` counts those left.
            assembling: Ids of the batches whose answers the caller assembles now: they count
                as batch spend, not as savings.
            batch_discount: The Batch API's price factor, for ``batch_saved_usd``.
            log: Where the call says it waits for another step (Dagster's ``context.log``).

        Returns:
            The answers found and paid, and per-partition figures.

        Raises:
            LedgerUnavailableError: The database stayed unreachable for ``outage_limit_s``;
                every answer paid is in the journal.

        Examples:
            >>> import tempfile
            >>> from llm_assets.resources.llm import ChatRequest
            >>> tmp = tempfile.mkdtemp()
            >>> ledger = ResponseLedger(sqlite_path=f"{tmp}/ledger.sqlite")
            >>> request = ChatRequest("k1", {"model": "sim-small", "messages": []}, 5)
            >>> answers = ledger.answer({"k1": request}, payer=Payer("run-1", "a", "v1"))
            >>> answers.found, answers.paid
            ({}, {})
            >>> ledger.get_backend().close()
        """
        access = (
            LedgerAccess(
                backend=self.get_backend(),
                claim_lease_s=self.claim_lease_s,
                claim_poll_s=self.claim_poll_s,
                outage_limit_s=self.outage_limit_s,
                journal_dir=self.journal_path(),
            )
            if self.enabled
            else LedgerAccess(backend=None)
        )
        return answer_requests(
            access,
            requests,
            send,
            payer=payer,
            partition_of=partition_of,
            budget_usd=budget_usd,
            assembling=assembling,
            batch_discount=batch_discount,
            log=log,
        )

    def batch_store(self) -> BatchStore:
        """Return the store of OpenAI batch records in the ledger's database, opening it once.

        Same SQLite file, or same PostgreSQL database and schema, as the ledger (tables
        ``batches`` and ``batch_claims``), so a batch's rows and its results live together.
        It opens also when ``enabled`` is False: batch records are what stops a batch being
        submitted twice, not a cache.

        Examples:
            .. code-block:: python

                import dagster as dg

                from llm_assets.resources.ledger import ResponseLedger


                @dg.sensor(minimum_interval_seconds=60)
                def batch_sensor(ledger: ResponseLedger):
                    for record in ledger.batch_store().live(limit=20):
                        ...  # poll OpenAI; when it is done, request the harvesting run


                defs = dg.Definitions(
                    sensors=[batch_sensor], resources={"ledger": ResponseLedger()}
                )
        """
        if self._batch_store is None:
            with _BUILD_LOCK:
                if self._batch_store is None:
                    self._batch_store = (
                        SQLiteBatchStore(self.sqlite_file())
                        if self.backend == "sqlite"
                        else PostgresBatchStore(self._postgres_url(), schema=self.postgres_schema)
                    )
        return self._batch_store

    def review_store(self) -> ReviewStore:
        """Return the store of review items and decisions in the ledger's database, opened once.

        Tables ``review_items``, ``review_decisions`` and ``review_rounds`` beside the ledger's:
        a decision is kept against the content it judged. Opens also when ``enabled`` is False.

        Examples:
            >>> import tempfile
            >>> ledger = ResponseLedger(sqlite_path=f"{tempfile.mkdtemp()}/ledger.sqlite")
            >>> ledger.review_store().latest_rounds(["review_insights"])
            []
        """
        if self._review_store is None:
            with _BUILD_LOCK:
                if self._review_store is None:
                    self._review_store = ReviewStore(
                        SQLiteDatabase(self.sqlite_file(), name="review store")
                        if self.backend == "sqlite"
                        else PostgresDatabase(
                            self._postgres_url(),
                            schema=self.postgres_schema,
                            name="review store",
                            application_name="llm-assets-reviews",
                            max_idle_connections=2,
                            logger=logger,
                        )
                    )
        return self._review_store

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the recorded entries for ``keys``; misses are absent."""
        return self.get_backend().get_many(keys) if self.enabled else {}

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return which of ``keys`` are recorded, without loading response bodies."""
        return self.get_backend().contains_many(keys) if self.enabled else set()

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Record ``entries`` (the first writer of a key wins); returns how many were new."""
        return self.get_backend().put_many(entries) if self.enabled else 0

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry recorded under ``key``, or None."""
        return self.get_backend().get(key) if self.enabled else None

    def count(self) -> int:
        """Return the number of recorded entries."""
        return self.get_backend().count() if self.enabled else 0

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total USD)`` paid, optionally for one run and/or asset."""
        if not self.enabled:
            return 0, 0.0
        return self.get_backend().spend(run_id=run_id, asset_key=asset_key)

    def writer(
        self, *, batch_size: int = 64, max_delay_s: float = 0.0, owner: str = "writer"
    ) -> LedgerWriter:
        """Return a `LedgerWriter` for recording responses as they arrive; use it with ``with``.

        It rides out outages up to ``outage_limit_s``, keeping answers in a journal named
        after ``owner`` under `journal_path`.
        """
        backend = self.get_backend() if self.enabled else None
        journal = LedgerJournal(self.journal_path(), claim_owner(owner))
        return LedgerWriter(
            backend,
            batch_size=batch_size,
            max_delay_s=max_delay_s,
            journal=journal,
            outage_limit_s=self.outage_limit_s,
        )

    def claims(self, owner: str) -> RequestClaims | None:
        """Return ``owner``'s `RequestClaims` (use it with ``with``), or None when claims are off.

        Claims are off when the ledger is disabled or ``claim_lease_s`` is 0.

        Examples:
            >>> import tempfile
            >>> from llm_assets.resources.ledger import ResponseLedger, claim_owner
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     ledger = ResponseLedger(sqlite_path=f"{tmp}/ledger.sqlite", claim_lease_s=30)
            ...     with ledger.claims(claim_owner("run-1")) as claims:
            ...         won = claims.claim(["k1", "k2"])
            ...     ledger.get_backend().close()
            >>> sorted(won)
            ['k1', 'k2']
        """
        if not self.enabled or self.claim_lease_s <= 0:
            return None
        return RequestClaims(self.get_backend(), owner, self.claim_lease_s)

    def sqlite_file(self) -> Path:
        """The SQLite file the ``sqlite`` backend uses."""
        return sqlite_file(self.sqlite_path)

    def journal_path(self) -> Path:
        """The directory of this ledger's outage journals (see ``journal_dir``)."""
        if self.backend == "sqlite":
            return journal_dir(self.journal_dir, sqlite=self.sqlite_file())
        return journal_dir(self.journal_dir, postgres=(self._postgres_url(), self.postgres_schema))

    def _build_backend(self) -> LedgerBackend:
        if self.backend == "sqlite":
            return SQLiteLedgerBackend(self.sqlite_file())
        return PostgresLedgerBackend(self._postgres_url(), schema=self.postgres_schema)
