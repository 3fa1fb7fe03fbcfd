"""The example pipeline: nightly enrichment of customer reviews.

``raw_reviews`` (daily partitions, generated) -> ``review_insights`` (one LLM call per review:
sentiment, topics, one-line summary; a review gate flags failed rows and a 3% audit sample for
a person) -> ``review_insights_reviewed`` (the rows that may flow on: not flagged, or
approved or edited) -> ``daily_digest`` (one LLM call per day over the day's reviewed insights,
with a Markdown report in the materialization metadata).
"""

import os
import warnings
from collections import Counter
from typing import Any, Literal

import dagster as dg
import pandas as pd
from llm_assets.factory import llm_asset
from llm_assets.review import ReviewPolicy, reviewed_asset
from llm_assets.sensors.batches import batch_sensor
from llm_assets.sensors.review import review_sensor
from llm_assets.task import LLMTask
from pydantic import BaseModel, Field

from reviews_example.alerting import slack_or_log
from reviews_example.sample_reviews import generate_reviews

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=0)
GROUP = "review_enrichment"


class ReviewInsight(BaseModel):
    """What one review says."""

    sentiment: Literal["positive", "neutral", "negative", "mixed"] = Field(
        description="Overall sentiment of the review."
    )
    topics: list[str] = Field(
        description="Product aspects the review discusses.", min_length=1, max_length=4
    )
    summary: str = Field(description="One-line summary, at most 20 words.", max_length=200)


class DailyDigest(BaseModel):
    """What a day's reviews say together."""

    headline: str = Field(description="One sentence on the day.")
    highlights: list[str] = Field(description="What customers liked.", max_length=5)
    concerns: list[str] = Field(description="What customers complained about.", max_length=5)
    action_items: list[str] = Field(description="Suggested follow-ups.", max_length=5)


INSIGHT_TASK = LLMTask(
    name="review_insights",
    system_prompt=(
        "You analyse customer product reviews for a retailer. Answer with the review's "
        "sentiment, the product aspects it discusses, and a one-line summary."
    ),
    user_prompt="Product: {product}\nRating: {rating}/5\nTitle: {title}\nReview: {body}",
    output_schema=ReviewInsight,
    id_column="review_id",
    max_output_tokens=200,
    # A typical answer, so estimated_cost_usd is close to what is paid (200 is only a cap).
    expected_output_tokens=40,
)

DIGEST_TASK = LLMTask(
    name="daily_digest",
    system_prompt=(
        "You write a short daily digest of customer feedback for the product team: a "
        "headline, highlights, concerns and action items."
    ),
    user_prompt=(
        "Date: {day}\nReviews analysed: {review_count}\nSentiment counts: {sentiment_counts}\n"
        "Most mentioned topics: {top_topics}\nSample of review summaries:\n{summaries}"
    ),
    output_schema=DailyDigest,
    id_column="day",
    max_output_tokens=600,
    expected_output_tokens=150,
)


with warnings.catch_warnings():
    # A single-run backfill policy lets a partition range run as one run with review_insights
    # (see the README); Dagster 1.13 marks the parameter beta, a choice made knowingly here.
    warnings.simplefilter("ignore", dg.BetaWarning)
    _daily_reviews_asset = dg.asset(
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        kinds={"pandas"},
        code_version="1",
    )


@_daily_reviews_asset
def raw_reviews(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Customer reviews posted on the partition's day (a deterministic sample)."""
    frames = {key: generate_reviews(key) for key in context.partition_keys}
    if len(frames) == 1:
        (table,) = frames.values()
        return dg.MaterializeResult(value=table, metadata={"dagster/row_count": len(table)})
    # A range run: each partition gets its own row count, not the range's.
    for key, table in frames.items():
        context.add_asset_metadata({"dagster/row_count": len(table)}, partition_key=key)
    return dg.MaterializeResult(value=frames)


def gather_day(insights: pd.DataFrame, partition_key: str | None) -> pd.DataFrame:
    """One row per day: the day's sentiment counts, top topics and a sample of summaries."""
    ok = insights[insights["llm_status"] == "ok"]
    if ok.empty:
        return pd.DataFrame(
            columns=["day", "review_count", "sentiment_counts", "top_topics", "summaries"]
        )
    sentiments = Counter(ok["sentiment"])
    topics = Counter(t for ts in ok["topics"] for t in ts)
    summaries = "\n".join(f"- {s}" for s in ok["summary"].head(40))
    return pd.DataFrame(
        [
            {
                "day": partition_key or "all",
                "review_count": len(ok),
                "sentiment_counts": ", ".join(f"{k}: {v}" for k, v in sentiments.most_common()),
                "top_topics": ", ".join(t for t, _ in topics.most_common(8)),
                "summaries": summaries,
            }
        ]
    )


def digest_report(digest: pd.DataFrame) -> dict[str, Any]:
    """A Markdown report of the digest for the materialization page."""
    parts = []
    for _, row in digest[digest["llm_status"] == "ok"].iterrows():
        parts.append(f"## Customer feedback digest, {row['day']}\n\n**{row['headline']}**\n")
        for title, column in (
            ("Highlights", "highlights"),
            ("Concerns", "concerns"),
            ("Action items", "action_items"),
        ):
            items = list(row[column]) if row[column] is not None else []
            parts.append(f"### {title}\n" + "\n".join(f"- {i}" for i in items) + "\n")
    report = "\n".join(parts) or "_No digest: the day had no analysed reviews._"
    return {"report": dg.MetadataValue.md(report)}


#: ``online`` (default) or ``batch``: how the nightly job answers the day's reviews. In batch
#: mode the job submits an OpenAI batch at half price and ends; ``review_batches_sensor``
#: materializes ``review_insights`` and ``daily_digest`` once the batch has finished.
MODE = os.environ.get("LLM_ASSETS_MODE", "online")

#: Which insights a person checks before they reach the digest: failed rows (a person may supply
#: the answer) and a reproducible 3% audit sample. A flagged row waits two days for a decision;
#: then it is rejected (kept in the quarantine, never in the digest).
INSIGHT_REVIEW = ReviewPolicy(
    failed=True,
    sample_rate=0.03,
    seed=7,
    timeout_s=2 * 24 * 3600,
    on_timeout="reject",
)

review_insights = llm_asset(
    INSIGHT_TASK,
    upstream=raw_reviews,
    passthrough_columns=["product", "rating"],
    group_name=GROUP,
    review=INSIGHT_REVIEW,
)

review_insights_reviewed = reviewed_asset(review_insights)

daily_digest = llm_asset(
    DIGEST_TASK,
    upstream=review_insights_reviewed,
    prepare=gather_day,
    report=digest_report,
    group_name=GROUP,
)

ASSETS = [raw_reviews, review_insights, review_insights_reviewed, daily_digest]

#: ``multiprocess`` (default: every step a process on the machine that launched the run),
#: ``in_process`` (every step in the run's own process: fewer processes on a small machine) or
#: ``celery``: every step a task on the dagster-celery workers listening on
#: ``LLM_ASSETS_CELERY_BROKER`` ("Running on more than one machine" in the README).
EXECUTOR = os.environ.get("LLM_ASSETS_EXECUTOR", "multiprocess")

#: Every step in a process of its own, forked from a server that has imported the code location
#: once; a spawned process would import Dagster, pandas and the pipeline again for each step
#: (seconds of CPU per step, dozens of steps in a planner run).
FORKED_STEPS = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["reviews_example.definitions"]}}}
)


def executor_for(name: str) -> dg.ExecutorDefinition:
    """The job's executor for ``LLM_ASSETS_EXECUTOR``.

    Examples:
        >>> executor_for("multiprocess").name
        'multiprocess'
        >>> executor_for("in_process").name
        'in_process'
        >>> executor_for("celery").name
        'celery'
    """
    if name == "multiprocess":
        return FORKED_STEPS
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        from llm_assets.celery_executor import celery_config, watched_celery_executor

        return watched_celery_executor.configured(celery_config(), name="celery")
    raise ValueError(
        f"LLM_ASSETS_EXECUTOR must be 'multiprocess', 'in_process' or 'celery', not {name!r}"
    )


JOB_EXECUTOR = executor_for(EXECUTOR)
#: The executor of what the UI launches outside the jobs (an asset's Materialize button): the
#: job's, except that Celery is for the job's steps only (they then fork on the launching machine).
ASSET_EXECUTOR = FORKED_STEPS if EXECUTOR == "celery" else JOB_EXECUTOR


nightly_enrichment_job = dg.define_asset_job(
    "nightly_enrichment",
    selection=dg.AssetSelection.assets(*ASSETS),
    partitions_def=DAILY,
    config={"ops": {"review_insights": {"config": {"mode": MODE}}}},
    executor_def=JOB_EXECUTOR,
    description="Generate, enrich and digest one day of customer reviews "
    f"({MODE} mode; LLM_ASSETS_MODE=online|batch).",
)

nightly_enrichment_schedule = dg.build_schedule_from_partitioned_job(
    nightly_enrichment_job,
    hour_of_day=2,
    minute_of_hour=0,
    # Off until someone decides the nightly spend: it answers a day of reviews every night.
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Materializes the previous day's partition of nightly_enrichment at 02:00 UTC. "
    "Stopped until turned on in the UI (Automation, or the toggle on this page); the Dagster "
    "daemon runs it (`make ui` starts one).",
)

#: Materializes a day's reviewed insights, and its digest again, once people decided every row
#: flagged that day (or the two days passed). The nightly job already built both from the rows
#: that needed nobody; flagged rows join them then. It announces each day's waiting rows, with
#: the review page's link, where the failure alerts go (Slack or the daemon's log).
insight_review_sensor = review_sensor(
    [review_insights_reviewed],
    then=[daily_digest],
    name="insight_review_sensor",
    announce=slack_or_log,
)

review_batches_sensor = batch_sensor(
    [review_insights],
    then=[review_insights_reviewed, daily_digest],
    name="review_batches_sensor",
    minimum_interval_seconds=60,
    default_status=(
        dg.DefaultSensorStatus.RUNNING if MODE == "batch" else dg.DefaultSensorStatus.STOPPED
    ),
)
