"""The example's planner asset: follow-up research on the day's most critical reviews.

``review_research`` reads ``review_insights``, keeps the day's lowest-rated negative reviews
(``MAX_REVIEWS`` of them), and lets a planner decide, per review, which tools to call:
``product_rating_stats`` (how the product is rated that day) and ``similar_complaints``
(other negative reviews of the same product). The calls run as parallel mapped steps; a
synthesizer turns each review and its findings into a research note.
"""

from typing import Literal

import dagster as dg
import pandas as pd
from llm_assets.planner import planned_asset, tool
from llm_assets.task import LLMTask
from pydantic import BaseModel, Field

from reviews_example.pipeline import DAILY, GROUP, review_insights
from reviews_example.sample_reviews import generate_reviews

MAX_REVIEWS = 3


class ProductDay(BaseModel):
    """A product on one day."""

    product: str = Field(description="Product name, exactly as in the review.")
    day: str = Field(description="Day of the reviews, YYYY-MM-DD.")


class RatingStats(BaseModel):
    """How a product was rated on one day."""

    product: str
    reviews: int
    mean_rating: float
    one_star: int


class Complaints(BaseModel):
    """Negative reviews of a product on one day."""

    product: str
    count: int
    titles: list[str]


def _reviews_of(args: ProductDay) -> pd.DataFrame:
    reviews = generate_reviews(args.day)
    return reviews[reviews["product"] == args.product]


@tool
def product_rating_stats(args: ProductDay) -> RatingStats:
    """Counts a product's reviews on a day, their mean rating and the one-star ones."""
    reviews = _reviews_of(args)
    mean = float(reviews["rating"].mean()) if len(reviews) else 0.0
    return RatingStats(
        product=args.product,
        reviews=len(reviews),
        mean_rating=round(mean, 2),
        one_star=int((reviews["rating"] == 1).sum()),
    )


@tool
def similar_complaints(args: ProductDay) -> Complaints:
    """Finds the other reviews of a product rated 2 or less on a day (up to 5 titles)."""
    bad = _reviews_of(args)
    bad = bad[bad["rating"] <= 2]
    return Complaints(product=args.product, count=len(bad), titles=list(bad["title"].head(5)))


class ResearchNote(BaseModel):
    """What the follow-up found about one critical review."""

    likely_cause: str = Field(description="The most likely cause of the complaint.")
    widespread: bool = Field(description="True when other customers report the same problem.")
    follow_up: str = Field(description="One suggested follow-up for the product team.")
    severity: Literal["low", "medium", "high"]


RESEARCH_TASK = LLMTask(
    name="review_research",
    system_prompt=(
        "You investigate critical customer reviews for the product team. Use the findings of "
        "the tools to judge whether the problem is widespread and what to do next."
    ),
    user_prompt=(
        "Review {review_id} of {product} ({rating}/5) on {day}: {summary}\nFindings: {tool_results}"
    ),
    output_schema=ResearchNote,
    id_column="review_id",
    max_output_tokens=300,
)


def most_critical(insights: pd.DataFrame, partition_key: str | None) -> pd.DataFrame:
    """The day's lowest-rated negative reviews, at most ``MAX_REVIEWS``, with their day."""
    negative = insights[(insights["llm_status"] == "ok") & (insights["sentiment"] == "negative")]
    chosen = negative.sort_values(["rating", "review_id"]).head(MAX_REVIEWS).copy()
    chosen["day"] = partition_key or ""
    return chosen.reset_index(drop=True)


review_research = planned_asset(
    name="review_research",
    upstream=review_insights,
    planner_prompt="product: {product}\nday: {day}\nrating: {rating}\nreview: {summary}",
    tools=[product_rating_stats, similar_complaints],
    synthesizer=RESEARCH_TASK,
    prepare=most_critical,
    passthrough_columns=["product", "rating"],
    max_tool_calls=4 * MAX_REVIEWS,
    max_calls_per_row=4,
    tool_retry_policy=dg.RetryPolicy(
        max_retries=2, delay=0.5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    group_name=GROUP,
)

RESEARCH_ASSETS = [review_research]

review_research_job = dg.define_asset_job(
    # Not "review_research": the planner's graph has that name, and a job may not share it.
    "critical_review_research",
    selection=dg.AssetSelection.assets(review_research),
    partitions_def=DAILY,
    description="Researches a day's most critical reviews with the planner asset "
    "review_research (run it after nightly_enrichment has answered the day).",
)
