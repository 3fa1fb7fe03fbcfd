"""The example pipeline: nightly enrichment of customer reviews, built on ``llm_assets``.

``pipeline`` (raw reviews -> insights -> digest), ``research`` (a planner asset), ``inbox``
(partner files as partitions), ``spend`` (spend and alerts), ``definitions`` (the code
location) and ``demo`` (what ``make demo`` runs).
"""
