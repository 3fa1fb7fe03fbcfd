"""The upstream asset: daily customer reviews (the library's deterministic sample)."""

from llm_assets.example.pipeline import raw_reviews

__all__ = ["raw_reviews"]
