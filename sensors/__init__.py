"""When llm-assets runs: sensors that turn outside events into runs (``llm_assets.sensors``).

``InboxFeed`` watches a directory: each CSV, JSONL or Parquet file dropped there becomes a
dynamic partition of an asset that reads it, and one run of whatever you target (see
``llm_assets.sensors.inbox`` for how files are found, settled, checked and deduplicated)::

    from llm_assets.sensors import InboxFeed

    feed = InboxFeed(name="partner_reviews", directory="inbox", required_columns=["body"])
    sensor = feed.build_sensor(target=[feed.asset, insights])

``batch_sensor`` notices finished OpenAI batches of ``llm_asset(..., mode="batch")`` assets,
harvests them into the ledger and requests the run that assembles each partition (see
``llm_assets.sensors.batches``).

``review_sensor`` launches a reviewed asset's partition once people decided its flagged rows
(or the review policy's timeout passed), and can announce the rows that wait, with the review
page's link, to the same destinations as the failure alerts (see ``llm_assets.sensors.review``).

``llm_failure_sensor`` reports a failed LLM asset run (asset, partition, error class, spend so
far) to a callable, the log or a Slack webhook (see ``llm_assets.sensors.alerts``).
"""

from llm_assets.sensors.alerts import (
    Alert,
    LLMFailureAlert,
    SlackWebhook,
    llm_failure_sensor,
    log_alert,
)
from llm_assets.sensors.batches import batch_sensor
from llm_assets.sensors.inbox import FILE_TAG, SHA256_TAG, InboxFeed
from llm_assets.sensors.inbox_files import partition_key_for
from llm_assets.sensors.review import ReviewWaitingAlert, review_sensor

__all__ = [  # noqa: RUF022 - plain sorted order
    "Alert",
    "FILE_TAG",
    "InboxFeed",
    "LLMFailureAlert",
    "ReviewWaitingAlert",
    "SHA256_TAG",
    "SlackWebhook",
    "batch_sensor",
    "llm_failure_sensor",
    "log_alert",
    "partition_key_for",
    "review_sensor",
]
