"""Spend lines by day, asset, partition and model: the ledger's sums joined with the runs'.

Money, tokens and requests come from the ledger, the record of what was paid. What the ledger
cannot know comes from the ``llm_asset`` materializations on the instance: rows and failures
(the failure rate), ``saved_usd``, what the answers the ledger gave from earlier work would
have cost (saved by the ledger), and ``provider_cache_saved_usd``, what the provider's prompt
cache took off the bill of the requests sent (priced by the run's ``LLMResource``). A
partition assembled from a batch reports the batch's answers as ``batch_cost_usd`` (paid by
the run that submitted it), not as ``saved_usd``, so both figures are taken as reported.
Saved by the batch discount is computed from the ledger's batch entries: each cost
``discount`` of the online price, so it saved ``cost * (1 / discount - 1)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import dagster as dg

from llm_assets.resources.ledger.rollup import SpendRow


@dataclass
class SpendLine:
    """Spend and outcome of one UTC day, asset, partition and model (or a total of them).

    ``partition`` is ``""`` for an unpartitioned asset.
    """

    day: str
    asset: str
    model: str
    partition: str = ""
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    spend_usd: float = 0.0
    saved_by_ledger_usd: float = 0.0
    saved_by_provider_cache_usd: float = 0.0
    saved_by_batch_usd: float = 0.0
    rows: int = 0
    failed: int = 0

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def failure_rate(self) -> float:
        """Failed rows over the rows materialized (0 without rows)."""
        return self.failed / self.rows if self.rows else 0.0

    @classmethod
    def total(cls, lines: Iterable[SpendLine]) -> SpendLine:
        """The sum of ``lines``.

        Examples:
            >>> a = SpendLine("2026-11-01", "a", "m", requests=2, spend_usd=0.5)
            >>> SpendLine.total([a, a]).requests
            4
        """
        out = cls(day="all", asset="all", model="all", partition="all")
        for line in lines:
            for name in _SUMMED:
                setattr(out, name, getattr(out, name) + getattr(line, name))
        return out


_KEYS = ("day", "asset", "model", "partition")
_SUMMED = tuple(f.name for f in fields(SpendLine) if f.name not in _KEYS)


@dataclass(frozen=True)
class Materialized:
    """What one materialization of an ``llm_asset`` partition reported."""

    day: str
    asset: str
    partition: str
    model: str
    rows: int
    failed: int
    saved_by_ledger_usd: float
    saved_by_provider_cache_usd: float


def materialized(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey], since: datetime | None
) -> list[Materialized]:
    """Every materialization of ``keys`` (since ``since``), with its rows, failures, savings.

    Args:
        instance: The Dagster instance.
        keys: Output tables of ``llm_asset`` definitions.
        since: Only materializations at or after this time.

    Returns:
        One entry per materialization event (a partition of a range run counts once).
    """
    out: list[Materialized] = []
    after = since.timestamp() if since is not None else None
    for key in keys:
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_timestamp=after),
                limit=1000,
                cursor=cursor,
                ascending=True,
            )
            for record in page.records:
                event = record.asset_materialization
                if event is None or "rows" not in event.metadata:
                    continue
                values = {name: value.value for name, value in event.metadata.items()}
                out.append(
                    Materialized(
                        day=datetime.fromtimestamp(record.timestamp, UTC).date().isoformat(),
                        asset=key.to_user_string(),
                        partition=record.partition_key or "",
                        model=str(values.get("model") or ""),
                        rows=int(_number(values.get("rows"))),
                        failed=int(_number(values.get("failed"))),
                        saved_by_ledger_usd=_number(values.get("saved_usd")),
                        saved_by_provider_cache_usd=_number(values.get("provider_cache_saved_usd")),
                    )
                )
            if not page.has_more:
                break
            cursor = page.cursor
    return out


def spend_lines(
    ledger_rows: Sequence[SpendRow], runs: Sequence[Materialized], *, batch_discount: float
) -> list[SpendLine]:
    """Joins the ledger's roll-up and the materializations by day, asset, partition and model.

    Args:
        ledger_rows: ``spend_rollup`` of the ledger.
        runs: ``materialized`` figures of the ``llm_asset`` tables.
        batch_discount: Share of the online price a batch answer cost (``LLMResource``'s).

    Returns:
        Lines sorted by day (newest first), asset, partition and model.

    Examples:
        >>> row = SpendRow("2026-11-01", "a", "m", 2, 100, 20, 0.25, 1, 0.05)
        >>> line, = spend_lines([row], [], batch_discount=0.5)
        >>> line.spend_usd, line.saved_by_batch_usd, line.tokens
        (0.25, 0.05, 120)
    """
    lines: dict[tuple[str, str, str, str], SpendLine] = {}

    def line(day: str, asset: str, partition: str, model: str) -> SpendLine:
        return lines.setdefault(
            (day, asset, partition, model), SpendLine(day, asset, model, partition)
        )

    for row in ledger_rows:
        target = line(row.day, row.asset_key, row.partition, row.model)
        target.requests += row.requests
        target.input_tokens += row.input_tokens
        target.output_tokens += row.output_tokens
        target.spend_usd += row.cost_usd
        if batch_discount > 0:
            target.saved_by_batch_usd += row.batch_cost_usd * (1 / batch_discount - 1)
    for run in runs:
        target = line(run.day, run.asset, run.partition, run.model)
        target.rows += run.rows
        target.failed += run.failed
        target.saved_by_ledger_usd += run.saved_by_ledger_usd
        target.saved_by_provider_cache_usd += run.saved_by_provider_cache_usd
    ordered = sorted(lines.values(), key=lambda x: (x.asset, x.partition, x.model))
    return sorted(ordered, key=lambda x: x.day, reverse=True)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
