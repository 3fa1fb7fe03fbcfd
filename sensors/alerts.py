"""Alerts when a run of LLM assets fails: which asset, which partition, why, and what it cost.

``llm_failure_sensor(destination)`` is a Dagster run-failure sensor. For each failed run that
planned an ``llm_asset`` it builds an ``LLMFailureAlert`` (the LLM assets whose steps failed,
the partition or range, the error class and message, and the run's spend so far read from the
ledger) and hands it to ``destination``: any callable, or ``SlackWebhook`` to post it to a
Slack channel through an incoming webhook (standard library only; the URL is a secret, read
from an environment variable through ``dg.EnvVar``). The same destinations take
``review_sensor``'s announcements of rows waiting for review.
"""

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from dagster._utils.error import SerializableErrorInfo

from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.ledger.rollup import spend_rollup
from llm_assets.summary import money
from llm_assets.versions import is_llm_table


@dataclass(frozen=True)
class LLMFailureAlert:
    """What a failed run of LLM assets reports.

    Attributes:
        run_id: The failed run.
        job_name: Its job.
        assets: The LLM assets whose steps failed (or that the run planned, when no step
            failed: a run worker that died).
        partition: The run's partition, ``"first...last"`` for a range, or ``None``.
        error_class: Class of the error that failed the first failed step, e.g.
            ``BudgetExceededError``.
        error_message: Its message (first 500 characters).
        spend_usd: What the run paid so far, from the ledger.
        requests_paid: How many responses it paid for.
        spend_by_asset: ``spend_usd`` by asset.
        run_url: Link to the run in the Dagster UI, when ``ui_url`` was given.

    Examples:
        >>> alert = LLMFailureAlert(run_id="r1", job_name="job", assets=("labels",),
        ...     partition="2026-11-01", error_class="BudgetExceededError",
        ...     error_message="over budget", spend_usd=0.0123, requests_paid=12)
        >>> print(alert.text().splitlines()[0])
        LLM run failed: labels, partition 2026-11-01 (BudgetExceededError)
    """

    run_id: str
    job_name: str
    assets: tuple[str, ...]
    partition: str | None
    error_class: str
    error_message: str
    spend_usd: float
    requests_paid: int
    spend_by_asset: Mapping[str, float] = field(default_factory=dict)
    run_url: str | None = None

    def text(self) -> str:
        """The alert as plain text, a few lines long."""
        where = f", partition {self.partition}" if self.partition else ""
        by_asset = ", ".join(f"{a} {money(v)}" for a, v in sorted(self.spend_by_asset.items()))
        lines = [
            f"LLM run failed: {', '.join(self.assets)}{where} ({self.error_class})",
            f"Error: {self.error_message}",
            f"Spend so far: {money(self.spend_usd)} for {self.requests_paid} paid requests"
            + (f" ({by_asset})" if by_asset else "")
            + "; every paid response is in the ledger, a re-run pays only for the rest.",
            f"Run: {self.run_url or self.run_id} (job {self.job_name})",
        ]
        return "\n".join(lines)


class Alert(Protocol):
    """What a destination is handed: an alert that can say itself in a few lines of text.

    ``LLMFailureAlert`` (a failed run) and ``ReviewWaitingAlert`` (rows that wait for a person,
    ``llm_assets.sensors.review``) are alerts.
    """

    def text(self) -> str:
        """The alert as plain text."""
        ...


logger = logging.getLogger(__name__)


def log_alert(alert: Alert) -> None:
    """A destination that writes the alert to the ``llm_assets.sensors.alerts`` logger.

    Examples:
        >>> log_alert(LLMFailureAlert("r", "job", ("labels",), None, "E", "m", 0.0, 0))
    """
    logger.warning("%s", alert.text())


class SlackWebhook:
    """Posts alerts to a Slack incoming webhook (standard library only).

    Args:
        url: The webhook URL: pass ``dg.EnvVar("SLACK_WEBHOOK_URL")`` so it is read when an
            alert is sent and never appears in code, logs or reprs.
        timeout_s: Timeout of the HTTP request.

    Examples:
        >>> hook = SlackWebhook(dg.EnvVar("SLACK_WEBHOOK_URL"))
        >>> hook
        SlackWebhook(url=<from SLACK_WEBHOOK_URL>)
    """

    def __init__(self, url: str | dg.EnvVar, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        source = f"from {self._url.env_var_name}" if isinstance(self._url, dg.EnvVar) else "hidden"
        return f"SlackWebhook(url=<{source}>)"

    def __call__(self, alert: Alert) -> None:
        """Sends ``alert``; raises ``UserError`` naming the variable when it cannot."""
        url = self._url.get_value() if isinstance(self._url, dg.EnvVar) else self._url
        if not url:
            name = getattr(self._url, "env_var_name", "the webhook URL")
            raise UserError(f"{name} is not set; export the Slack incoming-webhook URL there")
        body = json.dumps({"text": alert.text()}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise UserError(f"the Slack webhook answered HTTP {exc.code}; check its URL") from None
        except OSError as exc:  # the URL itself is a secret: name only what went wrong
            raise UserError(
                f"the Slack webhook could not be reached: {type(exc).__name__}"
            ) from None


def llm_failure_sensor(
    destination: Callable[[LLMFailureAlert], object],
    *,
    name: str = "llm_failure_alerts",
    assets: Sequence[dg.AssetKey | str] | None = None,
    ui_url: str | None = None,
    monitor_all_code_locations: bool = False,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds: int | None = None,
) -> dg.SensorDefinition:
    """A run-failure sensor that reports failed LLM asset runs to ``destination``.

    Runs that planned no LLM asset are left alone. The sensor needs the ``ledger`` resource
    (``ResponseLedger``) to read the run's spend; ``destination`` raising fails the tick, and
    Dagster evaluates the failure again on the next one.

    Args:
        destination: Called with each ``LLMFailureAlert``: ``SlackWebhook(...)`` or any callable.
        name: Sensor name.
        assets: The assets to alert on; defaults to every ``llm_asset`` of the code location.
        ui_url: Base URL of the Dagster UI (``http://dagster.example.com``) for run links.
        monitor_all_code_locations: Watch the runs of every code location, not just this one.
        default_status: Whether the sensor starts running; turn it on in the UI otherwise.
        minimum_interval_seconds: Seconds between evaluations.

    Returns:
        The sensor definition.

    Examples:
        >>> sensor = llm_failure_sensor(SlackWebhook(dg.EnvVar("SLACK_WEBHOOK_URL")))
        >>> sensor.name
        'llm_failure_alerts'
    """
    wanted = {dg.AssetKey.from_user_string(a) if isinstance(a, str) else a for a in assets or ()}

    def is_watched(key: dg.AssetKey) -> bool:
        return key in wanted if wanted else is_llm_table(key)

    @dg.run_failure_sensor(
        name=name,
        monitor_all_code_locations=monitor_all_code_locations,
        default_status=default_status,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Reports failed runs of LLM assets: asset, partition, error and spend.",
    )
    def _alerts(context: dg.RunFailureSensorContext, ledger: ResponseLedger) -> None:
        alert = build_alert(context, ledger, is_watched=is_watched, ui_url=ui_url)
        if alert is None:
            context.log.info(f"run {context.dagster_run.run_id} planned no LLM asset; no alert")
            return
        destination(alert)
        context.log.info(f"alert sent for run {alert.run_id} ({', '.join(alert.assets)})")

    return _alerts


def build_alert(
    context: dg.RunFailureSensorContext,
    ledger: ResponseLedger,
    *,
    is_watched: Callable[[dg.AssetKey], bool] = is_llm_table,
    ui_url: str | None = None,
) -> LLMFailureAlert | None:
    """The alert for the failed run of ``context``; ``None`` if it planned no watched asset."""
    run = context.dagster_run
    planned = _planned_assets_by_step(context.instance, run.run_id)
    failures = context.get_step_failure_events()
    failed_steps = [event.step_key for event in failures if event.step_key]
    assets = {k for step in failed_steps for k in planned.get(step, ()) if is_watched(k)}
    if not assets:
        assets = {k for keys in planned.values() for k in keys if is_watched(k)}
        if not assets or failed_steps:
            return None  # the failure was in another asset's step, or no LLM asset was planned
    error = _first_error(failures) or context.failure_event.event_specific_data
    error_class, message = _describe(error, context.failure_event.message or "run failed")
    by_asset: dict[str, float] = {}
    requests = 0
    for row in spend_rollup(ledger.get_backend(), run_id=run.run_id):
        by_asset[row.asset_key] = by_asset.get(row.asset_key, 0.0) + row.cost_usd
        requests += row.requests
    return LLMFailureAlert(
        run_id=run.run_id,
        job_name=run.job_name,
        assets=tuple(sorted(key.to_user_string() for key in assets)),
        partition=_partition(run.tags),
        error_class=error_class,
        error_message=message,
        spend_usd=sum(by_asset.values()),
        requests_paid=requests,
        spend_by_asset=by_asset,
        run_url=f"{ui_url.rstrip('/')}/runs/{run.run_id}" if ui_url else None,
    )


def _planned_assets_by_step(
    instance: dg.DagsterInstance, run_id: str
) -> dict[str, set[dg.AssetKey]]:
    records = instance.get_records_for_run(
        run_id=run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
    ).records
    out: dict[str, set[dg.AssetKey]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        out.setdefault(event.step_key or "", set()).add(event.asset_key)
    return out


def _first_error(failures: Sequence[dg.DagsterEvent]) -> SerializableErrorInfo | None:
    for event in failures:
        error = getattr(event.event_specific_data, "error", None)
        if isinstance(error, SerializableErrorInfo):
            return error
    return None


def _describe(data: Any, fallback: str) -> tuple[str, str]:
    error = data if isinstance(data, SerializableErrorInfo) else getattr(data, "error", None)
    if not isinstance(error, SerializableErrorInfo):
        return "RunFailure", fallback[:500]
    # Dagster wraps user code errors ("Error occurred while executing op ..."); report the cause.
    while error.cause is not None and _is_dagster_wrapper(error.cls_name):
        error = error.cause
    return error.cls_name or "Error", error.message.strip()[:500]


def _is_dagster_wrapper(cls_name: str | None) -> bool:
    return bool(cls_name) and str(cls_name).startswith("Dagster")


def _partition(tags: Mapping[str, str]) -> str | None:
    if PARTITION_NAME_TAG in tags:
        return tags[PARTITION_NAME_TAG]
    start, end = tags.get(ASSET_PARTITION_RANGE_START_TAG), tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None
