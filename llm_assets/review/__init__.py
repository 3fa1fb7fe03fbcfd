"""Human review: flagged rows wait for a person; nothing unreviewed flows downstream.

``ReviewPolicy`` says which rows of an ``llm_asset`` need a person (``llm_asset(...,
review=policy)``, the gate); ``reviewed_asset`` builds the asset of the rows that may flow on;
``llm_assets.sensors.review_sensor`` launches it when a partition's review is done;
``ReviewDesk`` lists and decides rows from Python, as the review page
(``python -m llm_assets review serve``) and the ``review`` command do. Decisions live in the
ledger's database (``llm_assets.resources.review``), keyed by the content they judged.
"""

from llm_assets.review.desk import Gate, ReviewDesk
from llm_assets.review.gate import REVIEW_REASON, REVIEW_STATUS, review_url
from llm_assets.review.policy import ReviewPolicy
from llm_assets.review.reviewed import REVIEW_CHECK, ReviewedSpec, reviewed_asset, reviewed_spec

__all__ = [
    "REVIEW_CHECK",
    "REVIEW_REASON",
    "REVIEW_STATUS",
    "Gate",
    "ReviewDesk",
    "ReviewPolicy",
    "ReviewedSpec",
    "review_url",
    "reviewed_asset",
    "reviewed_spec",
]
