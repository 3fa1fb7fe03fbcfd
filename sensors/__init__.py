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
"""

from llm_assets.sensors.batches import batch_sensor
from llm_assets.sensors.inbox import FILE_TAG, SHA256_TAG, InboxFeed
from llm_assets.sensors.inbox_files import partition_key_for

__all__ = ["FILE_TAG", "InboxFeed", "SHA256_TAG", "batch_sensor", "partition_key_for"]  # noqa: RUF022 - plain sorted
