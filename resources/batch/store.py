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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from llm_assets.resources.batch.records import BatchRecord, Claim


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

    @abc.abstractmethod
    def record(self, claim: Claim, records: Sequence[BatchRecord]) -> None:
        """Store the submitted batches of ``claim`` and release it.

        The batches are stored even if the claim has lapsed in the meantime: they exist at
        OpenAI and must be harvested. A batch id stored before is left untouched, so calling
        this again (once per batch, or after a retry) is harmless.

        Raises:
            ValueError: A record is for another scope than the claim.
        """

    @abc.abstractmethod
    def release(self, claim: Claim) -> None:
        """Give up ``claim`` without recording anything (the submission failed)."""

    @abc.abstractmethod
    def get(self, batch_id: str) -> BatchRecord | None:
        """Return the record of ``batch_id``, or None."""

    @abc.abstractmethod
    def live_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return the scope's batches not yet harvested, oldest submission first."""

    @abc.abstractmethod
    def history_for(
        self, asset_key: str, partition_key: str | None, task_version: str
    ) -> list[BatchRecord]:
        """Return every batch of the scope, harvested ones too, oldest submission first."""

    @abc.abstractmethod
    def live(self, limit: int = 100) -> list[BatchRecord]:
        """Return up to ``limit`` batches not yet harvested, least recently updated first.

        Every `update` refreshes ``updated_at``, so a sensor that polls ``live(n)`` and
        updates what it polled goes round all live batches, ``n`` per tick.
        """

    @abc.abstractmethod
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
