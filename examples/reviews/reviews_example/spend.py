"""The example's spend asset and failure alerts.

``llm_spend`` shows what ``review_insights`` and ``daily_digest`` (and every other LLM asset in
the ledger) cost, by day, asset and model; the job ``llm_spend_refresh`` materializes it
(``make demo`` runs it after the day's pipeline). ``llm_failure_alerts`` (running as soon as the
daemon does: it only watches runs) reports each failed run of an LLM asset: to Slack when
``LLM_ASSETS_SLACK_WEBHOOK_URL`` holds an incoming-webhook URL, else to the daemon's log.
"""

import os

import dagster as dg
from llm_assets.sensors.alerts import llm_failure_sensor
from llm_assets.spend import llm_spend_asset

from reviews_example.alerting import slack_or_log
from reviews_example.pipeline import daily_digest, review_insights

llm_spend = llm_spend_asset(assets=[review_insights, daily_digest], group_name="llm_costs")

SPEND_ASSETS = [llm_spend]
llm_spend_refresh_job = dg.define_asset_job(
    "llm_spend_refresh",
    selection=dg.AssetSelection.assets(llm_spend),
    description="Re-reads the response ledger into llm_spend (spend by day, asset and model).",
)
ALERT_SENSORS = [
    llm_failure_sensor(
        slack_or_log,
        ui_url=os.environ.get("LLM_ASSETS_UI_URL") or None,
        # Watching costs nothing and a failed run should never go unreported.
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
]
