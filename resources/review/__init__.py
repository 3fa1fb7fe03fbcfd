"""Human review: flagged rows and the decisions people make on them, in the ledger's database.

``ReviewStore`` keeps them (get it from ``ResponseLedger.review_store()``); a ``ReviewItem`` is
a flagged row with its latest decision, a ``DecisionRecord`` one entry of its append-only
history, a ``ReviewRound`` one gate materialization of a partition. ``ReviewRefused`` is the
error a refused decision raises: nothing was recorded.
"""

from llm_assets.resources.review.records import (
    DECISIONS,
    REVIEW_STATUSES,
    TIMEOUT_REVIEWER,
    Decision,
    DecisionRecord,
    ReviewItem,
    ReviewRefused,
    ReviewRound,
    item_id_of,
)
from llm_assets.resources.review.store import ReviewStore

__all__ = [
    "DECISIONS",
    "REVIEW_STATUSES",
    "TIMEOUT_REVIEWER",
    "Decision",
    "DecisionRecord",
    "ReviewItem",
    "ReviewRefused",
    "ReviewRound",
    "ReviewStore",
    "item_id_of",
]
