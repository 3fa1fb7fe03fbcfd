"""The example pipeline: nightly enrichment of customer reviews."""
