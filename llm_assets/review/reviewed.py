"""``reviewed_asset``: the rows of a review gate that may flow on, people's edits applied.

Downstream of a gate (an ``llm_asset`` built with ``review=ReviewPolicy(...)``): rows the
policy did not flag, and flagged rows approved or edited (the edit validated against the
task's schema). Rejected rows go to ``<name>_quarantine`` with the reviewer's reason. Rows
still waiting are held back, and the ``review_complete`` check is WARN until they are
decided; once the policy's timeout has passed, ``on_timeout`` settles them (and the settling
is recorded as a decision by ``(timeout)``, so nobody is asked again).
"""

import warnings
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import ValidationError

from llm_assets.recipes import recipe_of
from llm_assets.rendering import ROW_INDEX_COLUMN
from llm_assets.resources.errors import UserError
from llm_assets.resources.review import (
    TIMEOUT_REVIEWER,
    Decision,
    DecisionRecord,
    ReviewItem,
    ReviewRefused,
    ReviewStore,
)
from llm_assets.review.gate import REVIEW_STATUS, policy_of, review_url
from llm_assets.review.policy import ReviewPolicy
from llm_assets.task import LLMTask

REVIEW_CHECK = "review_complete"
#: The reviewed asset's metadata entry naming its gate.
GATE_METADATA = "llm_assets/review_gate"
_PAGE = 10_000


@dataclass(frozen=True)
class ReviewedSpec:
    """What ``reviewed_asset`` built an asset from (the review sensor reads it)."""

    gate: dg.AssetKey
    policy: ReviewPolicy
    table: dg.AssetKey
    quarantine: dg.AssetKey
    ledger_resource_key: str


_SPECS: dict[int, tuple[weakref.ref[Any], ReviewedSpec]] = {}


def reviewed_spec(definition: dg.AssetsDefinition) -> ReviewedSpec:
    """The gate and policy of an asset ``reviewed_asset`` built.

    Raises:
        UserError: ``definition`` was not built by ``reviewed_asset``.
    """
    entry = _SPECS.get(id(definition.node_def))
    if entry is None or entry[0]() is not definition.node_def:
        raise UserError(
            f"'{definition.node_def.name}' is not a reviewed asset: pass what "
            "llm_assets.reviewed_asset(gate) returned"
        )
    return entry[1]


@dataclass
class Settled:
    """One partition after review: the rows that flow on, the rejected, the figures."""

    table: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    held_back: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)


def reviewed_asset(
    gate: dg.AssetsDefinition,
    *,
    name: str | None = None,
    group_name: str | None = None,
    description: str | None = None,
) -> dg.AssetsDefinition:
    """Builds the asset of a gate's rows that may flow downstream, and its quarantine.

    Args:
        gate: An ``llm_asset`` built with ``review=ReviewPolicy(...)``.
        name: The asset's name; ``<gate>_reviewed`` by default. Its quarantine of rejected
            rows is ``<name>_quarantine``.
        group_name: Its group; the gate's by default.
        description: Its description.

    Returns:
        The asset definition (one run per partition). ``llm_assets.sensors.review_sensor``
        launches it when a partition's review is done.

    Raises:
        UserError: ``gate`` is not an ``llm_asset`` with a review policy.

    Examples:
        .. code-block:: python

            from llm_assets import ReviewPolicy, llm_asset, reviewed_asset

            insights = llm_asset(task, upstream=raw_reviews,
                                 review=ReviewPolicy(below={"confidence": 0.7}))
            insights_reviewed = reviewed_asset(insights)
    """
    recipe, policy = recipe_of(gate), policy_of(gate)
    if recipe is None or policy is None:
        raise UserError(
            f"reviewed_asset takes an llm_asset built with review=ReviewPolicy(...); "
            f"'{gate.node_def.name}' has no review policy"
        )
    gate_key, task, opts = recipe.table, recipe.task, recipe.options
    asset_name = name or f"{gate_key.path[-1]}_reviewed"
    quarantine_name = f"{asset_name}_quarantine"
    ledger_key = opts.ledger_resource_key or "ledger"
    common: dict[str, Any] = {
        "io_manager_key": opts.io_manager_key,
        "group_name": group_name or opts.group_name,
        "kinds": {"pandas"},
        "code_version": task.version,
    }
    outs = {
        asset_name: dg.AssetOut(
            metadata={GATE_METADATA: gate_key.to_user_string()},
            description=description
            or f"The rows of '{gate_key.to_user_string()}' that may flow on: those its review "
            "policy did not flag, and flagged rows a person approved or edited.",
            **common,
        ),
        quarantine_name: dg.AssetOut(
            description=f"Rows of '{gate_key.to_user_string()}' a reviewer rejected, with "
            "the reason.",
            **common,
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check = dg.AssetCheckSpec(
            REVIEW_CHECK,
            asset=asset_name,
            description="WARN while flagged rows of the partition wait for a decision.",
            partitions_def=opts.partitions_def,
        )

    @dg.multi_asset(
        name=asset_name,
        outs=outs,
        ins={"gate": dg.AssetIn(key=gate_key)},
        internal_asset_deps={
            asset_name: {gate_key},
            quarantine_name: {gate_key},
        },
        partitions_def=opts.partitions_def,
        backfill_policy=opts.backfill_policy,
        required_resource_keys={ledger_key},
        check_specs=[check],
    )
    def _reviewed(context: dg.AssetExecutionContext, gate: Any) -> Iterator[Any]:
        partitions: list[str | None] = (
            list(context.partition_keys)
            if context.has_partition_key_range or context.has_partition_key
            else [None]
        )
        tables = gate if isinstance(gate, Mapping) else {partitions[0]: gate}
        store = getattr(context.resources, ledger_key).review_store()
        done: dict[str | None, Settled] = {}
        for partition in partitions:
            done[partition] = settle(
                task, policy, store, tables[partition], gate_key.to_user_string(), partition
            )
            for line in _log_lines(done[partition], gate_key.to_user_string(), partition, policy):
                context.log.info(line)
        yield from _results(context, done, asset_name, quarantine_name, gate_key)

    spec = ReviewedSpec(
        gate_key, policy, dg.AssetKey(asset_name), dg.AssetKey(quarantine_name), ledger_key
    )
    _SPECS[id(_reviewed.node_def)] = (weakref.ref(_reviewed.node_def), spec)
    return _reviewed


def _results(
    context: dg.AssetExecutionContext,
    done: Mapping[str | None, Settled],
    asset_name: str,
    quarantine_name: str,
    gate_key: dg.AssetKey,
) -> Iterator[Any]:
    """The step's results; over a range, each partition's figures and check on their own."""
    ranged = len(done) > 1
    tables: dict[str | None, pd.DataFrame] = {}
    rejected: dict[str | None, pd.DataFrame] = {}
    checks = []
    for partition, settled in done.items():
        url = dg.MetadataValue.url(review_url(gate_key.to_user_string(), partition))
        held = len(settled.held_back)
        table_meta: dict[str, Any] = {
            "dagster/row_count": len(settled.table),
            **{f"rows_{k}": v for k, v in sorted(settled.counts.items())},
            "held_back": held,
            "review_url": url,
        }
        quarantine_meta = {"dagster/row_count": len(settled.rejected)}
        check: dict[str, Any] = {
            "asset_key": asset_name,
            "check_name": REVIEW_CHECK,
            "passed": not held,
            "severity": dg.AssetCheckSeverity.WARN,
            "metadata": {"held_back": held, "review_url": url},
            "description": f"{held} flagged row(s) wait for a decision"
            if held
            else "every flagged row is decided",
        }
        if not ranged:
            yield dg.MaterializeResult(
                asset_key=asset_name, value=settled.table, metadata=table_meta
            )
            yield dg.MaterializeResult(
                asset_key=quarantine_name, value=settled.rejected, metadata=quarantine_meta
            )
            yield dg.AssetCheckResult(**check)
            return
        context.add_asset_metadata(
            table_meta, asset_key=dg.AssetKey(asset_name), partition_key=partition
        )
        context.add_asset_metadata(
            quarantine_meta, asset_key=dg.AssetKey(quarantine_name), partition_key=partition
        )
        tables[partition], rejected[partition] = settled.table, settled.rejected
        del check["description"], check["asset_key"]
        checks.append(
            dg.AssetCheckEvaluation(asset_key=dg.AssetKey(asset_name), **check, partition=partition)
        )
    yield dg.MaterializeResult(asset_key=asset_name, value=tables)
    yield dg.MaterializeResult(asset_key=quarantine_name, value=rejected)
    yield from checks
    key = dg.AssetCheckKey(dg.AssetKey(asset_name), REVIEW_CHECK)
    # Dagster counts only a check result as the check's output, not evaluations.
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))


def settle(
    task: LLMTask,
    policy: ReviewPolicy,
    store: ReviewStore,
    gate: pd.DataFrame,
    asset_key: str,
    partition: str | None,
) -> Settled:
    """Applies the decisions (and the timeout) to one partition of a gate's table.

    Raises:
        UserError: The table has no ``review_status`` (materialize the gate again).
        dg.Failure: Rows waited past the timeout and ``on_timeout`` is ``fail``.
    """
    if REVIEW_STATUS not in gate.columns:
        raise UserError(
            f"asset '{asset_key}' partition {partition} has no {REVIEW_STATUS} column: it was "
            "materialized before its review policy; materialize it again"
        )
    id_column = task.id_column or ROW_INDEX_COLUMN
    flagged = gate[gate[REVIEW_STATUS] != "not_required"]
    keys = list(zip(flagged["llm_request_hash"], flagged["llm_task_version"], strict=True))
    decisions = store.latest_decisions(keys)
    waiting = {(i.request_key, i.task_version): i for i in _pending(store, asset_key, partition)}
    _settle_timeouts(policy, store, keys, decisions, waiting)
    fields = list(task.output_schema.model_fields)
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    out = Settled(gate.iloc[0:0], pd.DataFrame())
    for record in gate.to_dict("records"):
        key = (record.get("llm_request_hash"), record.get("llm_task_version"))
        status = record[REVIEW_STATUS]
        decision = decisions.get(key) if status != "not_required" else None  # type: ignore[arg-type]
        if status != "not_required" and decision is None:
            out.held_back.append(str(record[id_column]))
            continue
        if decision is not None:
            record.update(
                review_status=decision.decision,
                reviewed_by=decision.reviewer,
                reviewed_at=decision.decided_at,
                review_comment=decision.comment,
            )
            if decision.reviewer == TIMEOUT_REVIEWER:
                out.timed_out.append(str(record[id_column]))
            if decision.decision == "rejected":
                rejected.append(_rejection(record, id_column, decision))
                continue
            if decision.decision == "edited":
                problem = _apply_edit(task, record, fields, decision)
                if problem is not None:
                    rejected.append(_rejection(record, id_column, decision, problem))
                    continue
        rows.append(record)
        out.counts[record[REVIEW_STATUS]] = out.counts.get(record[REVIEW_STATUS], 0) + 1
    out.counts["rejected"] = len(rejected)
    out.table = pd.DataFrame(rows, columns=[*gate.columns, *_DECISION_COLUMNS])
    out.rejected = pd.DataFrame(rejected, columns=_rejected_columns(id_column))
    return out


_DECISION_COLUMNS = ("reviewed_by", "reviewed_at", "review_comment")


def _rejected_columns(id_column: str) -> list[str]:
    return [
        id_column, "llm_request_hash", "llm_task_version", "review_reason", "rejected_by",
        "rejected_at", "reason",
    ]  # fmt: skip


def _pending(store: ReviewStore, asset_key: str, partition: str | None) -> list[ReviewItem]:
    found: list[ReviewItem] = []
    while True:
        page = store.items(asset_key, partition, status="pending", limit=_PAGE, offset=len(found))
        found += page
        if len(page) < _PAGE:
            return found


def _settle_timeouts(
    policy: ReviewPolicy,
    store: ReviewStore,
    keys: list[tuple[str, str]],
    decisions: dict[tuple[str, str], DecisionRecord],
    waiting: dict[tuple[str, str], ReviewItem],
) -> None:
    """Records ``on_timeout``'s decision for rows that waited too long (or fails the run)."""
    late = [
        waiting[k] for k in keys if k not in decisions and k in waiting
        and policy.timed_out(waiting[k].opened_at)
    ]  # fmt: skip
    if not late:
        return
    if policy.on_timeout == "fail":
        ids = ", ".join(item.row_id for item in late[:20])
        raise dg.Failure(
            description=(
                f"{len(late)} flagged row(s) waited past the review timeout of "
                f"{policy.timeout_s:g} s and the policy says on_timeout='fail': rows {ids}"
                f"{' ...' if len(late) > 20 else ''}. Decide them on the review page "
                f"({review_url(late[0].asset_key, late[0].partition_key)}) or with "
                "`python -m llm_assets review`, then materialize this partition again"
            ),
            allow_retries=False,
        )
    decision: Decision = "approved" if policy.on_timeout == "approve" else "rejected"
    for item in late:
        try:
            decisions[(item.request_key, item.task_version)] = store.decide(
                item.item_id, decision, TIMEOUT_REVIEWER,
                comment=(
                    f"no decision within {policy.timeout_s:g} s "
                    f"(on_timeout={policy.on_timeout})"
                ),
                now=policy.clock(),
            )  # fmt: skip
        except ReviewRefused:
            # A person decided in the meantime: theirs stands.
            decided = store.latest_decisions([(item.request_key, item.task_version)])
            decisions.update(decided)


def _apply_edit(
    task: LLMTask, record: dict[str, Any], fields: list[str], decision: DecisionRecord
) -> str | None:
    try:
        answer = task.output_schema.model_validate(decision.value).model_dump(mode="json")
    except ValidationError as exc:
        return f"the edit no longer matches the task's schema: {exc.errors()[0]['msg']}"
    for name in fields:
        record[name] = answer.get(name)
    return None


def _rejection(
    record: dict[str, Any], id_column: str, decision: DecisionRecord, reason: str | None = None
) -> dict[str, Any]:
    return {
        id_column: record.get(id_column),
        "llm_request_hash": record.get("llm_request_hash"),
        "llm_task_version": record.get("llm_task_version"),
        "review_reason": record.get("review_reason"),
        "rejected_by": decision.reviewer,
        "rejected_at": decision.decided_at,
        "reason": reason or decision.comment,
    }


def _log_lines(
    settled: Settled, asset_key: str, partition: str | None, policy: ReviewPolicy
) -> Iterator[str]:
    figures = ", ".join(f"{n} {status}" for status, n in sorted(settled.counts.items()))
    yield f"{asset_key} {partition or ''}: {figures}; {len(settled.held_back)} held back"
    if settled.timed_out:
        yield (
            f"{len(settled.timed_out)} row(s) waited past the review timeout "
            f"({policy.timeout_s:g} s) and were {policy.on_timeout}d: "
            f"{', '.join(settled.timed_out[:20])}"
        )
    if settled.held_back:
        yield (
            f"{len(settled.held_back)} flagged row(s) wait for a decision and are held back: "
            f"{review_url(asset_key, partition)}"
        )
