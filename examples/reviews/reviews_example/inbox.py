"""The example's inbox-fed branch: review files that partners drop in a directory.

A partner exports reviews with the columns of ``raw_reviews`` (``review_id``, ``product``,
``rating``, ``title``, ``body``; more are kept) as CSV, JSONL or Parquet and drops the file in
``$LLM_ASSETS_INBOX_DIR`` (default ``inbox`` in the working directory). The sensor
``partner_reviews_sensor`` (stopped until turned on in the UI, with the daemon running; its
description says so and names the inbox) turns each new file into a partition of
``partner_reviews`` and a run of ``partner_reviews -> partner_review_insights``, which asks
the example's ``INSIGHT_TASK``; reviews already answered for ``review_insights`` come from the
ledger for free.
"""

import os
from pathlib import Path

import dagster as dg
from llm_assets.factory import llm_asset
from llm_assets.sensors import InboxFeed

from reviews_example.pipeline import INSIGHT_TASK

GROUP = "partner_reviews"
REQUIRED_COLUMNS = ("review_id", "product", "rating", "title", "body")


def partner_reviews_branch(
    directory: str | os.PathLike[str],
    *,
    settle_s: float = 5.0,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> tuple[list[dg.AssetsDefinition], list[dg.SensorDefinition]]:
    """The branch's assets and sensor, watching ``directory``.

    Args:
        directory: The inbox the partner drops files in.
        settle_s: Age after which a file counts as completely written.
        minimum_interval_seconds: Seconds between sensor ticks.
        default_status: Whether the sensor runs as soon as the daemon starts.

    Returns:
        The feed's asset and the insights (with their quarantine), and the sensor.

    Examples:
        >>> assets, sensors = partner_reviews_branch("inbox")
        >>> sorted(k.to_user_string() for a in assets for k in a.keys)
        ['partner_review_insights', 'partner_review_insights_quarantine', 'partner_reviews']
        >>> sensors[0].name
        'partner_reviews_sensor'
    """
    feed = InboxFeed(
        name="partner_reviews",
        directory=directory,
        required_columns=REQUIRED_COLUMNS,
        settle_s=settle_s,
        group_name=GROUP,
    )
    insights = llm_asset(
        INSIGHT_TASK,
        upstream=feed.asset,
        name="partner_review_insights",
        passthrough_columns=["product", "rating"],
        group_name=GROUP,
    )
    sensor = feed.build_sensor(
        target=[feed.asset, insights],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Runs each partner file (CSV, JSONL or Parquet with columns "
            f"{', '.join(REQUIRED_COLUMNS)}) dropped in {Path(directory).absolute()} "
            "($LLM_ASSETS_INBOX_DIR). "
            + (
                "Stopped until turned on in the UI (Automation, or the toggle on this page); "
                "the Dagster daemon evaluates it (`make ui` starts one)."
                if default_status == dg.DefaultSensorStatus.STOPPED
                else ""
            )
        ).strip(),
    )
    return [feed.asset, insights], [sensor]


INBOX_ASSETS, INBOX_SENSORS = partner_reviews_branch(
    os.environ.get("LLM_ASSETS_INBOX_DIR", "inbox")
)
