"""The batch sensor: notices finished OpenAI batches, harvests them, requests the assembly.

Each tick reads at most ``max_batches_per_tick`` live batches from the ledger's batch store
(least recently checked first) and asks the Batch API about each one: a bounded number of
API calls per tick, and no worker process held while a batch runs. For a batch that ended
(``completed``, ``expired``, ``cancelled`` or ``failed``) it downloads the output **and** the
error file, records every answered line in the ledger (at the batch price, paid by the run
that submitted it, its response naming the batch), and only then records the batch as ended.
Once every batch of an ``(asset, partition, task version)`` has ended it requests a run of
that asset partition; the run's ``llm_asset`` step finds every answer in the ledger and builds
the table with zero online requests, submitting failed lines again if they have tries left.

The run request's ``run_key`` is the batch id, so a tick that dies after writing to the
ledger and before its run was created simply requests it again on the next tick; Dagster
creates it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from llm_assets.provenance import BATCH_ID_FIELD
from llm_assets.resources.batch import TERMINAL_STATES, BatchClient, BatchRecord, BatchStore
from llm_assets.resources.ledger import LedgerEntry, ResponseLedger
from llm_assets.resources.llm import LLMResource, usage_details


@dataclass
class TickReport:
    """What one tick did."""

    run_requests: list[dg.RunRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def harvest(
    client: BatchClient, llm: LLMResource, store: BatchStore, ledger: ResponseLedger,
    record: BatchRecord, state: str, output_file_id: str | None, error_file_id: str | None,
    batch_error: str | None,
) -> tuple[int, int]:  # fmt: skip
    """Records an ended batch's answers in the ledger, then the batch as ended.

    Returns:
        ``(answered, failed)`` line counts.
    """
    requests = client.requests(record.input_file_id)
    entries: list[LedgerEntry] = []
    failures: dict[str, int] = {}
    now = datetime.now(UTC)
    for file_id in (output_file_id, error_file_id):
        if not file_id:
            continue
        for line in client.results(file_id):
            if not line.ok or line.body is None:
                reason = line.error_code or f"HTTP {line.status_code}"
                failures[reason] = failures.get(reason, 0) + 1
                continue
            body = dict(line.body)
            body[BATCH_ID_FIELD] = record.batch_id
            usage = body.get("usage") or {}
            model = str(body.get("model") or "")
            input_tokens = int(usage.get("prompt_tokens") or 0)
            output_tokens = int(usage.get("completion_tokens") or 0)
            cached, _ = usage_details(body)
            online = llm.price_book.cost(model, input_tokens, output_tokens, cached)
            entries.append(
                LedgerEntry(
                    key=line.custom_id,
                    response=body,
                    request=requests.get(line.custom_id, {}),
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_usd=online * llm.batch_discount,
                    latency_s=0.0,
                    created_at=now,
                    run_id=record.submitted_by_run_id,
                    asset_key=record.asset_key,
                    partition_key=record.partition_key,
                    task_version=record.task_version,
                )
            )
    ledger.put_many(entries)
    summary = ", ".join(f"{reason} x{count}" for reason, count in sorted(failures.items()))
    error = "; ".join(p for p in (batch_error, summary and f"failed lines: {summary}") if p)
    # Only now: an ended batch in the store promises its answers are in the ledger.
    store.update(
        record.batch_id,
        state=state,
        output_file_id=output_file_id,
        error_file_id=error_file_id,
        error=error or None,
    )
    return len(entries), sum(failures.values())


def run_tick(
    llm: LLMResource,
    ledger: ResponseLedger,
    log: Any,
    max_batches: int,
    then: Sequence[dg.AssetKey] = (),
) -> TickReport:
    """One evaluation of the batch sensor (see the module docstring)."""
    report = TickReport()
    store = ledger.batch_store()
    records = store.live(limit=max_batches)
    if not records:
        report.notes.append("no live batches")
        return report
    with llm.batch_client() as client:
        for record in records:
            if record.state not in TERMINAL_STATES:
                status = client.retrieve(record.batch_id)
                if not status.is_terminal:
                    store.update(record.batch_id, state=status.status)
                    report.notes.append(f"{record.batch_id}: {status.status}")
                    continue
                batch_error = "; ".join(status.errors) or None
                answered, failed = harvest(
                    client, llm, store, ledger, record, status.status,
                    status.output_file_id, status.error_file_id, batch_error,
                )  # fmt: skip
                message = (
                    f"batch {record.batch_id} of {_where(record)} ended {status.status}: "
                    f"{answered} answers recorded in the ledger, {failed} lines failed"
                )
                if status.status in ("failed", "cancelled") or batch_error:
                    log.warning(f"{message}; {batch_error or 'no reason given'}")
                else:
                    log.info(message)
            request = _assembly_request(store, record, then)
            if request is not None:
                report.run_requests.append(request)
    return report


def _assembly_request(
    store: BatchStore, record: BatchRecord, then: Sequence[dg.AssetKey]
) -> dg.RunRequest | None:
    scope = store.live_for(record.asset_key, record.partition_key, record.task_version)
    if any(r.state not in TERMINAL_STATES for r in scope):
        return None  # another batch of the same partition is still running
    return dg.RunRequest(
        run_key=f"llm-batch:{record.batch_id}",
        asset_selection=[dg.AssetKey.from_user_string(record.asset_key), *then],
        partition_key=record.partition_key,
        tags={"llm_assets/batch_ids": ",".join(r.batch_id for r in scope)[:4000]},
    )


def _where(record: BatchRecord) -> str:
    if record.partition_key is None:
        return f"'{record.asset_key}'"
    return f"'{record.asset_key}' [{record.partition_key}]"


def batch_sensor(
    assets: Sequence[dg.AssetsDefinition] | None = None,
    *,
    then: Sequence[dg.AssetsDefinition] = (),
    name: str = "llm_batch_sensor",
    minimum_interval_seconds: int = 60,
    max_batches_per_tick: int = 20,
    llm_resource_key: str = "llm",
    ledger_resource_key: str = "ledger",
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor that materializes ``llm_asset`` partitions whose batches have finished.

    Args:
        assets: The batch-mode assets it may materialize; every asset when ``None``.
        then: Downstream assets materialized in the same run, after the assembly (e.g. a
            daily digest of the assembled table).
        name: Sensor name.
        minimum_interval_seconds: Seconds between ticks (each makes up to
            ``max_batches_per_tick`` Batch API calls, plus two file downloads per ended batch).
        max_batches_per_tick: Live batches checked per tick.
        llm_resource_key: Resource key of the ``LLMResource`` that submitted the batches.
        ledger_resource_key: Resource key of the ``ResponseLedger`` holding them.
        default_status: Whether the sensor starts running when the code location loads.

    Returns:
        The sensor definition.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import llm_asset
            from llm_assets.sensors import batch_sensor

            insights = llm_asset(task, upstream=raw_reviews, mode="batch")
            defs = dg.Definitions(
                assets=[raw_reviews, insights],
                sensors=[batch_sensor([insights])],
                resources=resources,
            )
    """
    then_keys = [key for asset in then for key in asset.keys]
    selection = dg.AssetSelection.assets(*assets, *then) if assets else dg.AssetSelection.all()

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=selection,
        required_resource_keys={llm_resource_key, ledger_resource_key},
        default_status=default_status,
        description="Harvests finished OpenAI batches into the ledger and materializes the "
        "partitions they answered.",
    )
    def _batch_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        report = run_tick(
            getattr(context.resources, llm_resource_key),
            getattr(context.resources, ledger_resource_key),
            context.log,
            max_batches_per_tick,
            then_keys,
        )
        if not report.run_requests:
            return dg.SkipReason("; ".join(report.notes)[:1000] or "nothing to do")
        return dg.SensorResult(run_requests=report.run_requests)

    return _batch_sensor
