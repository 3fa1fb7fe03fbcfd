"""Where the example's alerts go: Slack when a webhook URL is configured, else the daemon's log.

Both the failure alerts (``reviews_example.spend``) and the review sensor's announcements of
rows waiting for a person (``reviews_example.pipeline``) use ``slack_or_log``.
"""

import os

import dagster as dg
from llm_assets.sensors import Alert, SlackWebhook, log_alert

SLACK_WEBHOOK_ENV = "LLM_ASSETS_SLACK_WEBHOOK_URL"


def slack_or_log(alert: Alert) -> None:
    """Posts ``alert`` to Slack if ``LLM_ASSETS_SLACK_WEBHOOK_URL`` is set, else logs it."""
    if os.environ.get(SLACK_WEBHOOK_ENV):
        SlackWebhook(dg.EnvVar(SLACK_WEBHOOK_ENV))(alert)
    else:
        log_alert(alert)
