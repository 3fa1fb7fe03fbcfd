"""What the review store keeps: review items, decisions and rounds, and its refusals."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from llm_assets.resources.errors import UserError

Decision = Literal["approved", "edited", "rejected"]
#: Every value of a table's ``review_status`` column.
REVIEW_STATUSES = ("not_required", "pending", "approved", "edited", "rejected")
DECISIONS: tuple[Decision, ...] = ("approved", "edited", "rejected")
#: Who decided a row the policy's timeout settled.
TIMEOUT_REVIEWER = "(timeout)"


class ReviewRefused(UserError):
    """A decision was refused; nothing was recorded. The message says why and what to do."""


def item_id_of(asset_key: str, partition_key: str | None, request_key: str, version: str) -> str:
    """The id of a row's review: the same content of the same asset and partition, the same id.

    Examples:
        >>> item_id_of("insights", "2026-11-01", "ab" * 32, "v1")
        'r-e3b167aa536452c036c2'
    """
    text = f"{asset_key}\x1f{partition_key or ''}\x1f{request_key}\x1f{version}"
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ReviewItem:
    """A flagged row waiting for (or given) a person's decision.

    Attributes:
        item_id: Its id in the page, the CLI and the Python API.
        asset_key: The gate asset.
        partition_key: Its partition (``None`` when unpartitioned).
        row_id: The row's id (the task's ``id_column``).
        request_key: The ledger key of the row's request: the content judged.
        task_version: The task version that built the request.
        reason: Why the policy flagged it.
        row: The row as the gate wrote it (inputs kept, answer fields, status), JSON values.
        opened_by_run_id: The gate run that first flagged it.
        opened_at: When it was first flagged (the timeout counts from here).
        revision: How many decisions it has had (0: pending).
        decision: The latest decision, if any.
        value: The edited answer of an ``edited`` decision.
        reviewer: Who made the latest decision.
        comment: The latest decision's comment (a rejection's reason).
        decided_at: When the latest decision was made.
    """

    item_id: str
    asset_key: str
    partition_key: str | None
    row_id: str
    request_key: str
    task_version: str
    reason: str
    row: dict[str, Any]
    opened_by_run_id: str
    opened_at: datetime
    revision: int = 0
    decision: Decision | None = None
    value: dict[str, Any] | None = None
    reviewer: str | None = None
    comment: str | None = None
    decided_at: datetime | None = None

    @property
    def status(self) -> str:
        """``pending`` or the latest decision."""
        return self.decision or "pending"


@dataclass(frozen=True)
class DecisionRecord:
    """One entry of a row's decision history (append-only)."""

    request_key: str
    task_version: str
    revision: int
    item_id: str
    decision: Decision
    value: dict[str, Any] | None
    reviewer: str
    comment: str | None
    decided_at: datetime


@dataclass(frozen=True)
class ReviewRound:
    """One gate materialization of a partition: the review it opened.

    Attributes:
        asset_key: The gate asset.
        partition_key: The partition (``None`` when unpartitioned).
        run_id: The gate run.
        task_version: The task version it answered with.
        opened_at: When the run wrote its table.
        flagged: Rows the policy flagged in that run (decided or not).
        undecided: Of those, rows without a decision now.
        first_opened_at: When the oldest undecided row was first flagged, if any.
    """

    asset_key: str
    partition_key: str | None
    run_id: str
    task_version: str
    opened_at: datetime
    flagged: int
    undecided: int
    first_opened_at: datetime | None

    @property
    def key(self) -> str:
        """A stable name for the round (the review sensor's run key is built from it)."""
        return f"{self.asset_key}|{self.partition_key or ''}|{self.run_id}"
