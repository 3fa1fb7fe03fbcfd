"""Durable records of submitted OpenAI batches, in the ledger's database.

A batch run submits and ends; a sensor later notices completion and a materialization harvests
the results into the ledger. Between the two, the only memory is a ``BatchRecord`` row. The
store also makes submission idempotent: a submitter first takes a ``Claim`` on its
``(asset, partition, task version)``, which at most one caller holds at a time, across
threads, processes and hosts, and only while no live batch exists for that scope.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from llm_assets.resources.batch.records import (
    HARVESTED,
    BatchRecord,
    Claim,
    check_update_state,
    scope_of,
)


class BatchStore(abc.ABC):
    """Durable batch records and submission claims; safe across threads, processes and hosts.

    Implementations: ``SQLiteBatchStore`` (one host) and ``PostgresBatchStore`` (shared). Get
    the one that lives next to the ledger from `ResponseLedger.batch_store`.

    Examples:
        .. code-block:: python

            import dagster as dg

            from llm_assets.resources.ledger import ResponseLedger


            @dg.asset
            def review_insights(context: dg.AssetExecutionContext, ledger: ResponseLedger):
                store = ledger.batch_store()
                claim = store.claim("review_insights", context.partition_key, "v1",
                                    context.run_id)
                if claim is None:
                    return  # a live batch exists, or another run is submitting right now
                try:
                    records = []  # submit with BatchClient, build one BatchRecord per batch
                except BaseException:
                    store.release(claim)
                    raise
                store.record(claim, records)


            defs = dg.Definitions(
                assets=[review_insights], resources={"ledger": ResponseLedger()}
            )
    """

    _PARAM: ClassVar[str]
    """The driver's placeholder for a query parameter: ``%s`` or ``?``."""

    @abc.abstractmethod
    def claim(
        self,
        asset_key: str,
        partition_key: str | None,
        task_version: str,
        run_id: str,
        lease_s: float = 600.0,
    ) -> Claim | None:
        """Claim the right to submit for a scope, or return None if someone else may.

        Succeeds when no live batch exists for the scope and no other run holds an unexpired
        claim on it; a run may claim again over its own claim (a retried step). Of any number
        of concurrent callers from different runs, exactly one gets the claim.

        Args:
            asset_key: Slash-joined asset key path.
            partition_key: The partition, if any.
            task_version: The task version.
            run_id: The Dagster run that will submit.
            lease_s: Seconds after which the claim lapses if neither recorded nor released.
        """

    def record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        """Store the submitted batches of ``claim`` and release it.

        The batches are stored even if the claim has lapsed in the meantime: they exist at
        OpenAI and must be harvested. A batch id stored before is left untouched, so calling
        this again (once per batch, or after a retry) is harmless.

        Raises:
            ValueError: A record is for another scope than the claim.
        """
        claim.check_records(records)
        self._record(claim, records)

    @abc.abstractmethod
    def _record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        """Store ``records``, already checked against ``claim``, and release it: one transaction."""

    @abc.abstractmethod
    def release(self, claim: Claim) -> None:
        """Give up ``claim`` without recording anything (the submission failed)."""

    def _warn_lapsed(self, claim: Claim, holder: str) -> None:
        """Warn that ``claim`` was released after it lapsed and run ``holder`` claimed the scope."""
        # On the implementation's logger, where operators already filter the store's messages.
        logging.getLogger(type(self).__module__).warning(
            "the claim of run %s on %s lapsed and run %s claimed it since; batches for "
            "this scope may have been submitted twice",
            claim.run_id,
            claim.scope,
            holder,
        )

    def get(self, batch_id: str) -> BatchRecord | None:
        """Return the record of ``batch_id``, or None."""
        rows = self._select(f"WHERE batch_id = {self._PARAM}", (batch_id,))
        return rows[0] if rows else None

    def live_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return the scope's batches not yet harvested, oldest submission first."""
        scope = scope_of(asset_key, partition_key, task_version)
        where = f"WHERE scope = {self._PARAM} AND {LIVE} ORDER BY created_at, batch_id"
        return self._select(where, (scope,))

    def history_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return every batch of the scope, harvested ones too, oldest submission first."""
        scope = scope_of(asset_key, partition_key, task_version)
        return self._select(f"WHERE scope = {self._PARAM} ORDER BY created_at, batch_id", (scope,))

    def live(self, limit: int = 100) -> list[BatchRecord]:
        """Return up to ``limit`` batches not yet harvested, least recently updated first.

        Every `update` refreshes ``updated_at``, so a sensor that polls ``live(n)`` and
        updates what it polled goes round all live batches, ``n`` per tick.
        """
        where = f"WHERE {LIVE} ORDER BY updated_at, batch_id LIMIT {self._PARAM}"
        return self._select(where, (limit,))

    @abc.abstractmethod
    def _select(self, where: str, params: tuple[object, ...]) -> list[BatchRecord]:
        """The records of the ``batches`` rows that ``where`` (``WHERE ...`` and more) picks."""

    def update(
        self,
        batch_id: str,
        *,
        state: str,
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record what OpenAI reports about a batch; ``None`` fields keep their stored value.

        Returns:
            True if the record changed; False if ``batch_id`` is unknown or already harvested
            (a harvested batch never becomes live again).

        Raises:
            ValueError: ``state`` is unknown or ``harvested`` (use `mark_harvested`).
        """
        check_update_state(state)
        return self._update(batch_id, state, output_file_id, error_file_id, error)

    @abc.abstractmethod
    def _update(
        self,
        batch_id: str,
        state: str,
        output_file_id: str | None,
        error_file_id: str | None,
        error: str | None,
    ) -> bool:
        """Store a checked ``update``; True if a live record of ``batch_id`` changed."""

    @abc.abstractmethod
    def mark_harvested(self, batch_id: str) -> bool:
        """Mark the batch's results as recorded in the ledger.

        Returns:
            True if this call harvested it; False if it was unknown or already harvested.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""


# The keys last: they can run to megabytes, and both databases read columns left to right.
COLUMNS = (
    "batch_id, scope, asset_key, partition_key, task_version, state, attempt, input_file_id, "
    "output_file_id, error_file_id, submitted_by_run_id, created_at, updated_at, error, "
    "request_count, request_keys"
)
"""The columns of the ``batches`` table, in the order of `record_to_row`."""

COLUMN_COUNT = len(COLUMNS.split(","))

LIVE = f"state <> '{HARVESTED}'"
"""SQL condition on the ``batches`` table: the batch is not harvested yet."""


def record_to_row(record: BatchRecord, created_at: Any, updated_at: Any) -> tuple[Any, ...]:
    """The column values of ``record`` (`COLUMNS` order); times as the backend stores them."""
    return (
        record.batch_id,
        record.scope,
        record.asset_key,
        record.partition_key,
        record.task_version,
        record.state,
        record.attempt,
        record.input_file_id,
        record.output_file_id,
        record.error_file_id,
        record.submitted_by_run_id,
        created_at,
        updated_at,
        record.error,
        len(record.request_keys),
        json.dumps(list(record.request_keys), separators=(",", ":")),
    )


def row_to_record(row: Sequence[Any], created_at: datetime, updated_at: datetime) -> BatchRecord:
    """A record from stored column values (`COLUMNS` order), with its times already decoded."""
    return BatchRecord(
        batch_id=row[0],
        asset_key=row[2],
        partition_key=row[3],
        task_version=row[4],
        state=row[5],
        request_keys=json.loads(row[15]),
        input_file_id=row[7],
        output_file_id=row[8],
        error_file_id=row[9],
        submitted_by_run_id=row[10],
        attempt=int(row[6]),
        created_at=created_at,
        updated_at=updated_at,
        error=row[13],
    )
