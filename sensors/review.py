"""The review sensor: launches a reviewed asset's partition once its review is done.

Each tick reads the latest review round of every partition of the watched gates from the
review store (one query). A round whose flagged rows are all decided, or whose oldest
undecided row has waited past the policy's ``timeout_s``, gets one run of the reviewed asset's
partition (and of the ``then`` assets). The run key names the round, and the cursor keeps the
rounds already requested, so a daemon restart or a tick that died after requesting launches
nothing twice: Dagster creates one run per run key. No process waits while people decide.

A round in which the policy flagged no row waited for nobody: when the gate's own run also
materialized the reviewed partition, there is nothing to launch; when it did not (the gate was
materialized alone), the reviewed partition is launched once that run has ended.

With ``announce``, the sensor also tells a destination of ``llm_assets.sensors.alerts``
(``log_alert``, ``SlackWebhook``, any callable) that a round's rows wait, with the page's link
(``ReviewWaitingAlert``): once per round, and again on the next tick if the destination
failed or the tick died before saving its cursor. A failing destination holds back no launch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.review import ReviewRound
from llm_assets.review.gate import review_url
from llm_assets.review.reviewed import ReviewedSpec, reviewed_spec

#: The tag naming the review round a run settles, and why it was launched.
ROUND_TAG = "llm_assets/review_round"
TRIGGER_TAG = "llm_assets/review_trigger"
_KEEP_ROUNDS = 5_000
_BUILT = "built"


@dataclass(frozen=True)
class ReviewWaitingAlert:
    """Rows of a gate's partition that wait for a person, as ``review_sensor`` announces them.

    Attributes:
        asset: The gate asset.
        partition: Its partition, or ``None``.
        waiting: Rows without a decision.
        flagged: Rows the policy flagged in the round.
        url: The partition's review page.

    Examples:
        >>> alert = ReviewWaitingAlert("tags", "d1", 3, 4, "http://h/review/tags/d1")
        >>> print(alert.text())
        3 rows wait for review: tags, partition d1 (4 flagged); decide on http://h/review/tags/d1
    """

    asset: str
    partition: str | None
    waiting: int
    flagged: int
    url: str

    def text(self) -> str:
        """The announcement as one line of text."""
        where = f", partition {self.partition}" if self.partition else ""
        rows = "1 row waits" if self.waiting == 1 else f"{self.waiting} rows wait"
        return (
            f"{rows} for review: {self.asset}{where} ({self.flagged} flagged); decide on {self.url}"
        )


def review_sensor(
    reviewed: Sequence[dg.AssetsDefinition],
    *,
    then: Sequence[dg.AssetsDefinition | dg.AssetKey] = (),
    name: str = "review_sensor",
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    announce: Callable[[ReviewWaitingAlert], Any] | None = None,
) -> dg.SensorDefinition:
    """Builds the sensor that launches reviewed partitions when their review is done.

    Args:
        reviewed: Assets built by ``llm_assets.reviewed_asset``.
        then: Downstream assets to materialize in the same run (e.g. a digest of the
            reviewed rows).
        name: The sensor's name.
        minimum_interval_seconds: Seconds between ticks.
        default_status: Running by default: rows are only held back while it is off.
        announce: A destination told once per round that rows wait, with the page's link:
            ``log_alert``, ``SlackWebhook(dg.EnvVar(...))`` or any callable taking a
            ``ReviewWaitingAlert``. If it raises, the tick logs a warning, launches what it
            would have, and the next tick tries again.

    Returns:
        The sensor definition (it needs the gates' ledger resource).

    Examples:
        .. code-block:: python

            from llm_assets.sensors import SlackWebhook, review_sensor

            sensor = review_sensor(
                [insights_reviewed],
                then=[daily_digest],
                announce=SlackWebhook(dg.EnvVar("SLACK_WEBHOOK_URL")),
            )
    """
    specs = [reviewed_spec(d) for d in reviewed]
    if not specs:
        raise UserError("review_sensor needs at least one asset built by reviewed_asset")
    ledger_keys = {s.ledger_resource_key for s in specs}
    if len(ledger_keys) != 1:
        raise UserError(
            f"the reviewed assets use several ledgers ({', '.join(sorted(ledger_keys))}): "
            "build one review_sensor per ledger"
        )
    (ledger_key,) = ledger_keys
    by_gate = {s.gate.to_user_string(): s for s in specs}
    extra = [key for t in then for key in (t.keys if isinstance(t, dg.AssetsDefinition) else [t])]
    selection = [k for s in specs for k in (s.table, s.quarantine)] + extra

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        asset_selection=selection,
        required_resource_keys={ledger_key},
        description="Launches a reviewed asset's partition when every flagged row of the "
        "gate's latest materialization is decided, or the review policy's timeout passed "
        "(or, with nothing flagged, when the gate's run did not build it).",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        ledger: ResponseLedger = getattr(context.resources, ledger_key)
        launched, told = _read_cursor(context.cursor)  # ordered sets of round keys
        requests = []
        for found in ledger.review_store().latest_rounds(sorted(by_gate)):
            if found.key in launched:
                continue
            spec = by_gate[found.asset_key]
            if found.flagged == 0:
                trigger = _nothing_flagged(context.instance, found, spec)
            else:
                trigger = _trigger(found, spec)
            if trigger == _BUILT:  # the gate's own run built the reviewed partition
                launched[found.key] = None
            elif trigger is None:
                waiting = found.flagged and found.key not in told
                if waiting and announce is not None and _announce(context, announce, found):
                    told[found.key] = None
            else:
                requests.append(_request(found, spec, extra, trigger))
                launched[found.key] = None
                context.log.info(
                    f"review of {found.asset_key} {found.partition_key or ''} {trigger}: "
                    f"launching {spec.table.to_user_string()}"
                )
        cursor = {
            "launched": list(launched)[-_KEEP_ROUNDS:],
            "announced": list(told)[-_KEEP_ROUNDS:],
        }
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))

    return _sensor


def _read_cursor(cursor: str | None) -> tuple[dict[str, None], dict[str, None]]:
    """The rounds already launched (or built by the gate's run) and already announced."""
    state = json.loads(cursor) if cursor else {}
    if isinstance(state, list):  # the cursor of earlier releases: launched rounds only
        return dict.fromkeys(state), {}
    return dict.fromkeys(state.get("launched", [])), dict.fromkeys(state.get("announced", []))


def _nothing_flagged(
    instance: dg.DagsterInstance, found: ReviewRound, spec: ReviewedSpec
) -> str | None:
    """What a round without a flagged row needs.

    Returns:
        ``built`` when the gate's own run materialized the reviewed partition, ``None`` while
        that run goes on, else the trigger of a run: ``nothing flagged``.
    """
    run = instance.get_run_by_id(found.run_id)
    if run is not None and not run.is_finished:
        return None
    partitions = [found.partition_key] if found.partition_key is not None else None
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=spec.table, asset_partitions=partitions), limit=1
    ).records
    if latest and latest[0].run_id == found.run_id:
        return _BUILT
    return "nothing flagged"


def _announce(
    context: dg.SensorEvaluationContext,
    announce: Callable[[ReviewWaitingAlert], Any],
    found: ReviewRound,
) -> bool:
    """Tells the destination that a round's rows wait; whether it took the news.

    A destination that fails holds back no launch; the next tick tries it again.
    """
    alert = _waiting(found)
    try:
        announce(alert)
    except Exception as exc:  # any destination's failure; its message may hold a secret
        why = str(exc) if isinstance(exc, UserError) else type(exc).__name__
        context.log.warning(
            f"could not announce the review of {alert.asset} {alert.partition or ''}: {why}; "
            "trying again on the next tick"
        )
        return False
    context.log.info(alert.text())
    return True


def _waiting(found: ReviewRound) -> ReviewWaitingAlert:
    return ReviewWaitingAlert(
        asset=found.asset_key,
        partition=found.partition_key,
        waiting=found.undecided,
        flagged=found.flagged,
        url=review_url(found.asset_key, found.partition_key),
    )


def _trigger(found: ReviewRound, spec: ReviewedSpec) -> str | None:
    if found.undecided == 0:
        return "decided"
    if spec.policy.timed_out(found.first_opened_at):
        return "timed out"
    return None


def _request(
    found: ReviewRound, spec: ReviewedSpec, extra: list[dg.AssetKey], trigger: str
) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"review:{spec.table.to_user_string()}:{found.key}",
        partition_key=found.partition_key,
        asset_selection=[spec.table, spec.quarantine, *extra],
        tags={ROUND_TAG: found.key, TRIGGER_TAG: trigger},
    )
