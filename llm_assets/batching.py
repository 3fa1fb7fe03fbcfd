"""Batch mode of ``llm_asset``: submit what the ledger lacks as OpenAI batches, and end.

A step in batch mode renders and looks up its requests like an online step. For each
partition whose requests are all answered (by earlier online runs or by harvested batches) it
builds the table as usual, with zero online requests. Otherwise it submits the partition's
misses as one or more batches (``BatchClient.submit``), records them durably
(``BatchStore.record``) and materializes nothing for the step: the batch sensor
(``llm_assets.sensors.batch_sensor``) harvests the results into the ledger when the batch
finishes and requests the materialization that assembles the table.

Idempotent: a partition with a live batch for the same task version submits nothing, and of
two steps submitting the same partition at once only the one holding the store's ``Claim``
submits. A request that came back failed is submitted again up to ``max_resubmits`` times;
after that it is a ``failed`` row (``batch_failed``) with the provider's reason, quarantined
like any other failure.

Money: the answers of the batches a step assembles were paid by the run that submitted them,
so they are counted as batch spend, never as ledger savings. Those batches are the scope's
ended batches not yet marked harvested, and the earlier batches whose failed lines they
submitted again (harvested by the step that resubmitted, before any table was built). A batch
is marked harvested once the step built its partition's table, so a step that fails while
assembling leaves the batch to the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llm_assets.resources.batch import (
    TERMINAL_STATES,
    BatchClient,
    BatchRecord,
    BatchStore,
    SubmittedBatch,
)
from llm_assets.resources.errors import UserError
from llm_assets.resources.llm import ChatRequest
from llm_assets.tables import Resolution


@dataclass
class BatchPlan:
    """What batch mode decided for one step.

    Attributes:
        pending: Partition -> the batches it waits for (submitted now or earlier).
        submitted: The batches this step submitted.
        exhausted: Request key -> the failure of a request that used up its resubmissions.
    """

    pending: dict[str | None, list[str]] = field(default_factory=dict)
    submitted: list[BatchRecord] = field(default_factory=list)
    exhausted: dict[str, Resolution] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchMode:
    """How a step submits batches: where records live, whom to ask, how often to retry.

    Args:
        store: The batch records, in the ledger's database.
        client: The Batch API of the step's endpoint.
        asset_key: The asset, for records and provenance.
        run_id: The submitting run.
        max_resubmits: How many times a failed request is submitted again.
    """

    store: BatchStore
    client: BatchClient
    asset_key: str
    run_id: str
    max_resubmits: int = 1

    def assembling(self, partitions: list[str | None], task_version: str) -> frozenset[str]:
        """The batches whose answers the step assembles for the first time, by id.

        For each partition: its ended batches not yet harvested and, walking back one attempt
        at a time, the earlier batches they submitted again lines of. The sensor puts a
        batch's answers in the ledger before it records the batch as ended, so the step's
        ledger lookup finds every answer of these batches.
        """
        out: set[str] = set()
        for partition in partitions:
            history = self.store.history_for(self.asset_key, partition, task_version)
            out |= _unassembled(history)
        return frozenset(out)

    def mark_assembled(self, partitions: list[str | None], task_version: str) -> None:
        """Marks the ended batches of ``partitions`` harvested: their tables are built."""
        for partition in partitions:
            self._harvest_ended(partition, task_version)

    def _harvest_ended(self, partition: str | None, task_version: str) -> None:
        for record in self.store.live_for(self.asset_key, partition, task_version):
            if record.state in TERMINAL_STATES:
                self.store.mark_harvested(record.batch_id)

    def plan(
        self,
        misses: list[ChatRequest],
        partition_of: Mapping[str, str | None],
        task_version: str,
        log: Any,
    ) -> BatchPlan:
        """Submits each partition's misses unless a batch for them is live or they are spent.

        Args:
            misses: Requests the ledger does not answer.
            partition_of: The partition each request belongs to.
            task_version: The version the requests were rendered with.
            log: Where the step says what it did.

        Returns:
            The step's plan: partitions waiting on batches, and requests given up on.
        """
        by_partition: dict[str | None, list[ChatRequest]] = {}
        for request in misses:
            by_partition.setdefault(partition_of.get(request.key), []).append(request)
        plan = BatchPlan()
        for partition, requests in by_partition.items():
            self._plan_partition(plan, partition, requests, task_version, log)
        return plan

    def _plan_partition(
        self,
        plan: BatchPlan,
        partition: str | None,
        requests: list[ChatRequest],
        task_version: str,
        log: Any,
    ) -> None:
        live = [
            r
            for r in self.store.live_for(self.asset_key, partition, task_version)
            if r.state not in TERMINAL_STATES
        ]
        if live:
            plan.pending[partition] = [r.batch_id for r in live]
            log.info(
                f"{self._where(partition)}: waiting for live batch(es) "
                f"{', '.join(r.batch_id for r in live)}; nothing submitted"
            )
            return
        history = self.store.history_for(self.asset_key, partition, task_version)
        tries: dict[str, list[BatchRecord]] = {}
        for record in history:
            for key in record.request_keys:
                tries.setdefault(key, []).append(record)
        todo = [r for r in requests if len(tries.get(r.key, [])) <= self.max_resubmits]
        for request in requests:
            if len(tries.get(request.key, [])) > self.max_resubmits:
                plan.exhausted[request.key] = self._exhausted(request, tries[request.key])
        if not todo:
            return
        # Ended batches block a new claim; their answers are in the ledger and their failed
        # lines are the ones submitted again (``assembling`` finds them back by those lines).
        self._harvest_ended(partition, task_version)
        claim = self.store.claim(self.asset_key, partition, task_version, self.run_id)
        if claim is None:
            live = self.store.live_for(self.asset_key, partition, task_version)
            plan.pending[partition] = [r.batch_id for r in live]
            log.info(f"{self._where(partition)}: another run is submitting; nothing submitted")
            return
        attempt = 1 + max((r.attempt for r in history), default=-1)
        records: list[BatchRecord] = []

        def keep(submitted: SubmittedBatch) -> None:
            # Recorded the moment it exists: a failure on a later file loses no batch.
            record = self._record(submitted, partition, task_version, attempt)
            self.store.record(claim, [record])
            records.append(record)

        metadata = {
            "asset": self.asset_key[:512],
            "partition": (partition or "")[:512],
            "task_version": task_version,
            "run_id": self.run_id,
        }
        try:
            self.client.submit(todo, metadata, on_submitted=keep)
        except BaseException:
            if not records:
                self.store.release(claim)
            raise
        plan.submitted += records
        plan.pending[partition] = [r.batch_id for r in records]
        log.info(
            f"{self._where(partition)}: submitted {len(todo)} requests as batch(es) "
            f"{', '.join(r.batch_id for r in records)} (attempt {attempt}); the batch sensor "
            "materializes the partition when they finish"
        )

    def _record(
        self, submitted: SubmittedBatch, partition: str | None, version: str, attempt: int
    ) -> BatchRecord:
        now = datetime.now(UTC)
        return BatchRecord(
            batch_id=submitted.batch_id,
            asset_key=self.asset_key,
            partition_key=partition,
            task_version=version,
            state=submitted.status,
            request_keys=list(submitted.request_keys),
            input_file_id=submitted.input_file_id,
            output_file_id=None,
            error_file_id=None,
            submitted_by_run_id=self.run_id,
            attempt=attempt,
            created_at=now,
            updated_at=now,
        )

    def _exhausted(self, request: ChatRequest, tried: list[BatchRecord]) -> Resolution:
        reasons = sorted({r.error for r in tried if r.error})
        detail = f": {'; '.join(reasons)}" if reasons else ""
        return Resolution(
            body=None,
            model=str(request.body.get("model") or ""),
            input_tokens=0,
            output_tokens=0,
            cost_usd=0.0,
            latency_s=0.0,
            cached=False,
            paid_by_run_id=None,
            error_class="batch_failed",
            error=(
                f"the Batch API did not answer this request in {len(tried)} batches "
                f"({', '.join(r.batch_id for r in tried)}){detail}; their error files hold "
                "each line's reason. Re-materialize in online mode to retry it now"
            ),
        )

    def _where(self, partition: str | None) -> str:
        return self.asset_key if partition is None else f"{self.asset_key} [{partition}]"


def _unassembled(history: list[BatchRecord]) -> set[str]:
    """The ids of a scope's batches whose answers no table of the partition has shown yet.

    Examples:
        >>> def record(batch_id, attempt, keys, state):
        ...     now = datetime(2026, 11, 1, tzinfo=UTC)
        ...     return BatchRecord(
        ...         batch_id=batch_id, asset_key="a", partition_key="eu", task_version="v1",
        ...         state=state, request_keys=keys, input_file_id="file-in",
        ...         output_file_id=None, error_file_id=None, submitted_by_run_id="run-1",
        ...         attempt=attempt, created_at=now, updated_at=now)
        >>> assembled = record("b0", 0, ["k0"], "harvested")  # a table showed it already
        >>> first = record("b1", 1, ["k1", "k2"], "harvested")  # k2 failed: sent again
        >>> again = record("b2", 2, ["k2"], "completed")
        >>> sorted(_unassembled([assembled, first, again]))
        ['b1', 'b2']
    """
    fresh = [r for r in history if r.is_live]
    if not fresh:
        return set()
    by_attempt: dict[int, list[BatchRecord]] = {}
    for record in history:
        by_attempt.setdefault(record.attempt, []).append(record)
    attempt = min(r.attempt for r in fresh)
    out = {r.batch_id for r in history if r.attempt >= attempt}
    keys = {key for r in history if r.attempt >= attempt for key in r.request_keys}
    for earlier in sorted((a for a in by_attempt if a < attempt), reverse=True):
        records = by_attempt[earlier]
        if not any(keys.intersection(r.request_keys) for r in records):
            break  # a round that was assembled before: its lines were not sent again
        out |= {r.batch_id for r in records}
        keys |= {key for r in records for key in r.request_keys}
    return out


@contextmanager
def batch_mode(
    mode: str,
    llm: Any,
    ledger: Any,
    asset_key: str,
    run_id: str,
    max_resubmits: int,
) -> Iterator[BatchMode | None]:
    """The step's ``BatchMode`` in batch mode (its client closed afterwards), else ``None``.

    Raises:
        UserError: Batch mode without a ledger (nowhere to keep what the batch answers).
    """
    if mode != "batch":
        yield None
        return
    if ledger is None:
        raise UserError(
            f"asset '{asset_key}' runs in batch mode but has no ledger: batch answers are "
            "kept in the ledger until the asset is assembled. Set ledger_resource_key on "
            "llm_asset (and a ResponseLedger resource), or run it with mode='online'"
        )
    client = llm.batch_client()
    try:
        yield BatchMode(ledger.batch_store(), client, asset_key, run_id, max_resubmits)
    finally:
        client.close()
