"""What the Batch API reports: a batch just submitted, and a batch's status when polled."""

from __future__ import annotations

from dataclasses import dataclass, field

import openai

from llm_assets.resources.batch.records import TERMINAL_STATES


@dataclass(frozen=True)
class SubmittedBatch:
    """A batch just created: what to record about it.

    Attributes:
        batch_id: OpenAI's batch id.
        input_file_id: The uploaded input file.
        request_keys: The ledger keys in the file, in file order.
        status: The status OpenAI reported on creation (normally ``validating``).
    """

    batch_id: str
    input_file_id: str
    request_keys: list[str]
    status: str


@dataclass(frozen=True)
class BatchStatus:
    """What OpenAI reports about a batch now.

    Attributes:
        batch_id: OpenAI's batch id.
        status: ``validating``, ``in_progress``, ``finalizing``, ``completed``, ``failed``,
            ``expired``, ``cancelling`` or ``cancelled``.
        output_file_id: The file of successful lines, once written.
        error_file_id: The file of failed or unexecuted lines, once written.
        total: Requests in the batch (0 until validated).
        completed: Requests answered successfully so far.
        failed: Requests that failed so far.
        errors: Why the batch itself failed (``code: message (line n)`` each), if it did.
        metadata: The metadata given at creation.

    Examples:
        >>> status = BatchStatus("batch_abc", "finalizing", None, None, total=2, completed=2)
        >>> status.is_terminal
        False
    """

    batch_id: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        """True once the batch will not change any more: its files are final."""
        return self.status in TERMINAL_STATES

    @classmethod
    def from_batch(cls, batch: openai.types.Batch) -> BatchStatus:
        """Read the SDK's ``Batch`` object."""
        counts = batch.request_counts
        errors = [
            f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line is not None else "")
            for e in ((batch.errors.data or []) if batch.errors else [])
        ]
        return cls(
            batch_id=batch.id,
            status=batch.status,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            total=counts.total if counts else 0,
            completed=counts.completed if counts else 0,
            failed=counts.failed if counts else 0,
            errors=errors,
            metadata=dict(batch.metadata or {}),
        )
