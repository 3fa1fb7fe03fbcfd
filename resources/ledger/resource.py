"""The response ledger: a durable, content-addressed store of paid-for LLM responses.

Before calling the LLM an asset looks up every row's request key with `ResponseLedger.get_many`,
sends only the misses, and records each response through a `LedgerWriter` as it arrives. A crash
loses at most the calls in flight; a re-run pays only for rows not yet in the ledger.

The resource is the ledger's face for assets; building blocks live in ``core`` (errors, entry,
backend interface), ``writer``, ``sqlite`` and ``postgres``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from llm_assets.resources.batch import BatchStore, PostgresBatchStore, SQLiteBatchStore
from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger.claims import RequestClaims
from llm_assets.resources.ledger.core import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
)
from llm_assets.resources.ledger.postgres import PostgresLedgerBackend
from llm_assets.resources.ledger.sqlite import SQLiteLedgerBackend
from llm_assets.resources.ledger.writer import LedgerWriter
from llm_assets.resources.settings import POSTGRES_URL_ENV_VAR, dagster_home, resolve_setting

logger = logging.getLogger(__name__)

_BUILD_LOCK = threading.Lock()


class ResponseLedger(dg.ConfigurableResource):
    """Durable ledger of paid-for LLM responses, keyed by the sha256 of the canonical request.

    Look up all rows with `get_many` before calling the LLM, send only the misses, and record each
    response with `writer` as it arrives: no token is paid for twice and every row can be traced
    back to the run, asset and partition that paid for it. SQLite suits one host (several
    processes may write at once); PostgreSQL suits a shared deployment.

    Steps that miss the same request at once pay for it once: each claims its misses with
    `claims` before sending (a lease of ``claim_lease_s`` seconds, renewed while it runs) and
    waits for the answers to requests another step claimed.

    Outside Dagster execution (a CLI, a notebook) construct it directly and call `get_backend`.

    Examples:
        .. code-block:: python

            import dagster as dg

            from llm_assets.resources.ledger import ResponseLedger


            @dg.asset
            def review_insights(ledger: ResponseLedger) -> dg.MaterializeResult:
                keys: list[str] = []  # sha256 of each row's canonical request
                done = ledger.get_many(keys)
                with ledger.writer() as writer:
                    for key in keys:
                        if key not in done:
                            ...  # call the LLM, then writer.add(LedgerEntry(key=key, ...))
                return dg.MaterializeResult(
                    metadata={"reused": len(done), "paid": writer.written}
                )


            defs = dg.Definitions(
                assets=[review_insights],
                resources={
                    "ledger": ResponseLedger(
                        backend="postgres", postgres_url=dg.EnvVar("DAGSTER_PG_URL")
                    )
                },
            )
    """

    backend: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        description="Where entries are stored: 'sqlite' (one host) or 'postgres' (shared).",
    )
    sqlite_path: str | None = Field(
        default=None,
        description="SQLite file; default $DAGSTER_HOME/ledger.sqlite (.dagster_home/ in the "
        "working directory when DAGSTER_HOME is unset). The parent directory is created.",
    )
    postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql:// or postgresql+psycopg2://) of the "
        f"'postgres' backend; default: the {POSTGRES_URL_ENV_VAR} environment variable, the "
        "server of Dagster's run storage. Pass dg.EnvVar(...) for another; it is never logged.",
    )
    postgres_schema: str = Field(
        default="llm_assets",
        description="PostgreSQL schema holding the 'responses' table; created if missing.",
    )
    claim_lease_s: float = Field(
        default=30.0,
        ge=0.0,
        description="Before sending, a step claims each request the ledger cannot answer, so "
        "steps that miss the same request at once pay for it once: the others wait for its "
        "answer. The claim is a lease of this many seconds, renewed every third of it while "
        "the step runs; when the step dies, the rows it held are free again after at most "
        "this long. 0 turns claims off (racing steps may then both pay).",
    )
    claim_poll_s: float = Field(
        default=1.0,
        gt=0.0,
        description="How often a step waiting on requests another step claimed checks the "
        "ledger for their answers (and for leases that ran out).",
    )
    enabled: bool = Field(
        default=True,
        description="False disables the ledger for debugging: no lookups, no writes, every call "
        "is paid for.",
    )

    _backend: LedgerBackend | None = PrivateAttr(default=None)
    _batch_store: BatchStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Open the backend (creating its table if needed) before the run uses it."""
        if self.enabled:
            self.get_backend()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the backend's and the batch store's connections."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()
        store, self._batch_store = self._batch_store, None
        if store is not None:
            store.close()

    def get_backend(self) -> LedgerBackend:
        """Return the backend, opening it on first use (also when ``enabled`` is False)."""
        if self._backend is None:
            with _BUILD_LOCK:
                if self._backend is None:
                    self._backend = self._build_backend()
        return self._backend

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
                        else PostgresBatchStore(
                            self._resolve_postgres_url(), schema=self.postgres_schema
                        )
                    )
        return self._batch_store

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

    def writer(self, *, batch_size: int = 64, max_delay_s: float = 0.0) -> LedgerWriter:
        """Return a `LedgerWriter` for recording responses as they arrive; use it with ``with``."""
        backend = self.get_backend() if self.enabled else None
        return LedgerWriter(backend, batch_size=batch_size, max_delay_s=max_delay_s)

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
        path = resolve_setting(self.sqlite_path, field="ResponseLedger.sqlite_path")
        return Path(path) if path else dagster_home() / "ledger.sqlite"

    def _build_backend(self) -> LedgerBackend:
        if self.backend == "sqlite":
            return SQLiteLedgerBackend(self.sqlite_file())
        return PostgresLedgerBackend(self._resolve_postgres_url(), schema=self.postgres_schema)

    def _resolve_postgres_url(self) -> str:
        try:
            url = resolve_setting(self.postgres_url, field="ResponseLedger.postgres_url")
        except UserError as exc:
            raise LedgerConfigError(str(exc)) from None
        url = url or os.environ.get(POSTGRES_URL_ENV_VAR)
        if not url:
            raise LedgerConfigError(
                "ResponseLedger(backend='postgres') needs a database: export "
                f"{POSTGRES_URL_ENV_VAR}=postgresql+psycopg2://user:password@host:5432/dbname "
                "(the server of Dagster's run storage works) or pass "
                "postgres_url=dg.EnvVar('<VARIABLE>')"
            )
        return url
