"""Spend at a glance: an asset that rolls the ledger up by day, asset and model.

``llm_spend_asset`` is the face; ``figures`` joins the ledger's roll-up
(``llm_assets.resources.ledger.rollup``) with what the ``llm_asset`` materializations
reported, and ``view`` turns the result into a table, plotted totals and a Markdown chart.
"""

from llm_assets.spend.asset import llm_spend_asset
from llm_assets.spend.figures import SpendLine, materialized, spend_lines
from llm_assets.spend.view import spend_chart, spend_frame, spend_metadata

__all__ = [
    "SpendLine",
    "llm_spend_asset",
    "materialized",
    "spend_chart",
    "spend_frame",
    "spend_lines",
    "spend_metadata",
]
