"""What the batch store keeps: the states a batch goes through, its record, a claim.

A batch is *live* until it is marked ``harvested``, whatever its OpenAI status: a ``failed``,
``expired`` or ``cancelled`` batch still has to be looked at (its error file, the lines to
resubmit) before another submission for the same scope may start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

OPENAI_STATES = frozenset(
    {
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "failed",
        "expired",
        "cancelling",
        "cancelled",
    }
)
"""Every ``status`` of ``openai.types.Batch``."""

TERMINAL_STATES = frozenset({"completed", "failed", "expired", "cancelled"})
"""OpenAI statuses after which a batch no longer changes: its files are final."""

HARVESTED = "harvested"
"""Our own final state: the batch's results (and failures) are recorded in the ledger."""

BATCH_STATES = OPENAI_STATES | {HARVESTED}
"""Every state a ``BatchRecord`` may hold."""

BATCH_ID_FIELD = "llm_assets_batch_id"
"""Key under which a ledger entry's response body names the batch that answered it."""


def check_state(state: str) -> str:
    """Return ``state`` if it is a known batch state.

    Raises:
        ValueError: ``state`` is neither an OpenAI batch status nor ``harvested``.

    Examples:
        >>> check_state("in_progress")
        'in_progress'
    """
    if state not in BATCH_STATES:
        known = ", ".join(sorted(BATCH_STATES))
        raise ValueError(f"unknown batch state {state!r}; expected one of: {known}")
    return state


def scope_of(asset_key: str, partition_key: str | None, task_version: str) -> str:
    """The text that identifies one ``(asset, partition, task version)`` in both tables.

    Partition keys may be ``None``, which SQL never finds equal to itself; one canonical text
    compares simply and fits one index.

    Examples:
        >>> scope_of("review_insights", None, "v1")
        '["review_insights",null,"v1"]'
    """
    return json.dumps([asset_key, partition_key, task_version], separators=(",", ":"))


@dataclass(frozen=True)
class BatchRecord:
    """One submitted OpenAI batch, as the store keeps it.

    Attributes:
        batch_id: OpenAI's batch id (``batch_...``).
        asset_key: Slash-joined asset key path, e.g. ``"review_insights"``.
        partition_key: Partition the requests belong to, if any.
        task_version: Version of the task definition that built the requests.
        state: An OpenAI batch status, or ``harvested`` once the results are in the ledger.
        request_keys: Ledger keys of the batch's requests; each line's ``custom_id``.
        input_file_id: The uploaded JSONL file the batch runs.
        output_file_id: The file of successful lines, once OpenAI has written it.
        error_file_id: The file of failed or unexecuted lines, once OpenAI has written it.
        submitted_by_run_id: The Dagster run that submitted the batch.
        attempt: 0 for the first submission of the scope, +1 per resubmission of failed lines.
        created_at: When the batch was submitted; timezone-aware (stored as UTC).
        updated_at: When the record last changed; timezone-aware (stored as UTC).
        error: Why the batch failed, expired or was cancelled, if known.

    Examples:
        >>> from datetime import UTC, datetime
        >>> now = datetime(2026, 11, 1, tzinfo=UTC)
        >>> record = BatchRecord(
        ...     batch_id="batch_abc", asset_key="review_insights", partition_key="2026-11-01",
        ...     task_version="v1", state="validating", request_keys=["k1", "k2"],
        ...     input_file_id="file-in", output_file_id=None, error_file_id=None,
        ...     submitted_by_run_id="run-1", attempt=0, created_at=now, updated_at=now)
        >>> record.is_live, len(record.request_keys)
        (True, 2)
    """

    batch_id: str
    asset_key: str
    partition_key: str | None
    task_version: str
    state: str
    request_keys: list[str]
    input_file_id: str
    output_file_id: str | None
    error_file_id: str | None
    submitted_by_run_id: str
    attempt: int
    created_at: datetime
    updated_at: datetime
    error: str | None = None

    def __post_init__(self) -> None:
        check_state(self.state)
        for name in ("created_at", "updated_at"):
            if getattr(self, name).utcoffset() is None:
                raise ValueError(
                    f"BatchRecord.{name} must be timezone-aware (batch {self.batch_id}); "
                    "use datetime.now(UTC)"
                )
        if self.attempt < 0:
            raise ValueError(f"BatchRecord.attempt must be >= 0, got {self.attempt}")

    @property
    def scope(self) -> str:
        """The record's ``(asset, partition, task version)`` as ``scope_of`` spells it."""
        return scope_of(self.asset_key, self.partition_key, self.task_version)

    @property
    def is_live(self) -> bool:
        """True until the batch is marked harvested."""
        return self.state != HARVESTED

    @property
    def is_terminal(self) -> bool:
        """True once OpenAI will not change the batch any more (or it is harvested)."""
        return self.state in TERMINAL_STATES or self.state == HARVESTED


@dataclass(frozen=True)
class Claim:
    """The right to submit batches for one ``(asset, partition, task version)``.

    Get one from `BatchStore.claim`; pass it to `BatchStore.record` after submitting, or to
    `BatchStore.release` when the submission failed. It lapses at ``expires_at`` so that a
    crashed submitter never blocks the scope for good.

    Attributes:
        asset_key: Slash-joined asset key path.
        partition_key: The partition, if any.
        task_version: The task version.
        run_id: The Dagster run holding the claim.
        token: Unique to this claim; put it in the batches' metadata to find them again.
        expires_at: When another run may take over (store clock, UTC).
    """

    asset_key: str
    partition_key: str | None
    task_version: str
    run_id: str
    token: str
    expires_at: datetime

    @property
    def scope(self) -> str:
        """The claim's ``(asset, partition, task version)`` as ``scope_of`` spells it."""
        return scope_of(self.asset_key, self.partition_key, self.task_version)

    def check_records(self, records: Sequence[BatchRecord]) -> None:
        """Raise ``ValueError`` unless every record belongs to this claim's scope."""
        for record in records:
            if record.scope != self.scope:
                raise ValueError(
                    f"batch {record.batch_id} is for {record.scope}, but the claim is for "
                    f"{self.scope}; record each scope's batches under its own claim"
                )


def check_update_state(state: str) -> str:
    """The state `BatchStore.update` may set: any OpenAI status, not ``harvested``."""
    if check_state(state) == HARVESTED:
        raise ValueError("use BatchStore.mark_harvested(batch_id) to mark a batch harvested")
    return state
