"""The upstream asset: daily customer reviews (the reviews example's deterministic sample)."""

from reviews_example.pipeline import raw_reviews

__all__ = ["raw_reviews"]
