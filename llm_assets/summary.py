"""What one step did, per partition: rows, outcome, requests, tokens, money.

In a run over several partitions every partition gets its own ``StepSummary``: its rows and
failures, and the requests, tokens and dollars of the unique requests it owns (a request shared
by several partitions is owned by the first one that asked it, so partition figures add up to
the step's totals). ``StepSummary.total`` sums them for the run-level line in the log.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg


@dataclass
class StepSummary:
    """Totals of one partition (or of a whole step), turned into materialization metadata."""

    rows: int = 0
    ok: int = 0
    failed: int = 0
    requests_sent: int = 0
    cache_hits: int = 0
    repairs: int = 0
    duplicates_collapsed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    #: Input tokens the provider read from its prompt cache, and what its discount took off.
    cached_input_tokens: int = 0
    provider_cache_saved_usd: float = 0.0
    #: What the ledger's answers from earlier work would have cost again.
    saved_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    #: Answers of the batches assembled now, and their price, paid by the submitting run.
    batch_answered: int = 0
    batch_cost_usd: float = 0.0
    #: What the batch discount saved on those answers.
    batch_saved_usd: float = 0.0
    models: set[str] = field(default_factory=set)
    #: Models no price table knows: billed as 0 here (price them with LLMResource.prices).
    unpriced_models: set[str] = field(default_factory=set)
    error_classes: dict[str, int] = field(default_factory=dict)

    @property
    def hit_ratio(self) -> float:
        """Share of unique requests answered by the ledger."""
        looked_up = self.cache_hits + self.requests_sent
        return self.cache_hits / looked_up if looked_up else 0.0

    @property
    def failure_rate(self) -> float:
        """Failed rows over all rows (0 for an empty partition)."""
        return self.failed / self.rows if self.rows else 0.0

    def count_failure(self, error_class: str) -> None:
        """Counts one failed row of ``error_class``."""
        self.failed += 1
        self.error_classes[error_class] = self.error_classes.get(error_class, 0) + 1

    @classmethod
    def total(cls, parts: Iterable[StepSummary]) -> StepSummary:
        """The sum of several summaries.

        Examples:
            >>> StepSummary.total([StepSummary(rows=2, ok=2), StepSummary(rows=1, ok=1)]).rows
            3
        """
        out = cls()
        for part in parts:
            for name in _ADDED:
                setattr(out, name, getattr(out, name) + getattr(part, name))
            out.models |= part.models
            out.unpriced_models |= part.unpriced_models
            for name, count in part.error_classes.items():
                out.error_classes[name] = out.error_classes.get(name, 0) + count
        return out


_ADDED = (
    "rows",
    "ok",
    "failed",
    "requests_sent",
    "cache_hits",
    "repairs",
    "duplicates_collapsed",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cached_input_tokens",
    "provider_cache_saved_usd",
    "saved_usd",
    "estimated_cost_usd",
    "batch_answered",
    "batch_cost_usd",
    "batch_saved_usd",
)


USD_DIGITS = 6


def usd(value: float) -> dg.MetadataValue:
    """Money as a number Dagster plots: US dollars rounded to the micro-dollar.

    Finer than a cent's hundredth on purpose: a one-row partition costs fractions of a cent,
    and partition figures must still add up to the ledger's sums.

    Examples:
        >>> usd(0.02266512).value
        0.022665
    """
    return dg.MetadataValue.float(round(value, USD_DIGITS))


def money(value: float) -> str:
    """US dollars as a person reads them: ``$12.35``, ``$0.0227``, ``$0.00034``.

    Examples:
        >>> money(12.3456), money(0.0226651), money(0.000342), money(0.0000351), money(0)
        ('$12.35', '$0.0227', '$0.00034', '$0.000035', '$0')
    """
    if value == 0:
        return "$0"
    size = abs(value)
    if size >= 1:
        return f"${value:,.2f}"
    if size >= 0.01:
        return f"${value:.4f}"
    # Two significant digits, never in scientific notation.
    digits = min(USD_DIGITS, 1 - math.floor(math.log10(size)))
    return f"${value:.{digits}f}"


def spend_line(summary: StepSummary) -> str:
    """What a partition cost, as a person reads it: paid online, paid by batch, saved.

    What the provider's prompt cache took off the bill is named when it took something off.

    Examples:
        >>> spend_line(StepSummary(cost_usd=0.002, saved_usd=0.001, input_tokens=12_000))
        '$0.0020 new for 12,000 tokens, $0.0010 saved by the ledger'
        >>> spend_line(StepSummary(cost_usd=0.001, provider_cache_saved_usd=0.0004))
        "$0.0010 new for 0 tokens, $0 saved by the ledger, $0.00040 saved by the provider's cache"
        >>> spend_line(StepSummary(batch_answered=2, batch_cost_usd=0.00098))
        '$0 new for 0 tokens, $0.00098 paid by batch (2 answers), $0 saved by the ledger'
    """
    tokens = summary.input_tokens + summary.output_tokens
    paid = f"{money(summary.cost_usd)} new for {tokens:,} tokens, "
    if summary.batch_answered:
        count = summary.batch_answered
        paid += (
            f"{money(summary.batch_cost_usd)} paid by batch "
            f"({count:,} answer{'s' if count != 1 else ''}), "
        )
    line = f"{paid}{money(summary.saved_usd)} saved by the ledger"
    if summary.provider_cache_saved_usd > 0:
        line += f", {money(summary.provider_cache_saved_usd)} saved by the provider's cache"
    return line


def summary_metadata(
    summary: StepSummary, *, task_version: str, default_model: str
) -> dict[str, Any]:
    """Materialization metadata of one partition: rows, outcome, spend, what the ledger saved.

    Examples:
        >>> md = summary_metadata(StepSummary(rows=3, ok=3), task_version="v", default_model="m")
        >>> md["rows"], md["failed"], md["model"]
        (3, 0, 'm')
    """
    metadata: dict[str, Any] = {
        # Money first: the line people read before any figure.
        "spend": spend_line(summary),
        "dagster/row_count": summary.rows,
        "rows": summary.rows,
        "ok": summary.ok,
        "failed": summary.failed,
        "failure_rate": round(summary.failure_rate, 4),
        "requests_sent": summary.requests_sent,
        "cache_hits": summary.cache_hits,
        "hit_ratio": round(summary.hit_ratio, 4),
        "duplicates_collapsed": summary.duplicates_collapsed,
        "repairs": summary.repairs,
        "input_tokens": summary.input_tokens,
        "output_tokens": summary.output_tokens,
        "tokens": summary.input_tokens + summary.output_tokens,
        "cached_input_tokens": summary.cached_input_tokens,
        "cost_usd": usd(summary.cost_usd),
        "provider_cache_saved_usd": usd(summary.provider_cache_saved_usd),
        "saved_usd": usd(summary.saved_usd),
        "estimated_cost_usd": usd(summary.estimated_cost_usd),
        "task_version": task_version,
        "model": ", ".join(sorted(summary.models)) or default_model,
        "failures_by_class": dg.MetadataValue.json(summary.error_classes),
    }
    if summary.unpriced_models:
        # Billed as $0 here: no price table knows them (LLMResource.prices can).
        metadata["unpriced_models"] = ", ".join(sorted(summary.unpriced_models))
    if summary.batch_answered:
        # Answers the submitting run paid for: at the batch price, and what its discount saved.
        metadata["batch_answered"] = summary.batch_answered
        metadata["batch_cost_usd"] = usd(summary.batch_cost_usd)
        metadata["batch_saved_usd"] = usd(summary.batch_saved_usd)
    return metadata


def run_line(asset: str, parts: Mapping[str | None, StepSummary]) -> str:
    """One log line with the step's totals over all its partitions.

    Examples:
        >>> parts = {"p1": StepSummary(rows=2, ok=2), "p2": StepSummary(rows=1, failed=1)}
        >>> run_line("a", parts)  # doctest: +ELLIPSIS
        'a: 2 partitions, 3 rows (ok 2, failed 1), 0 requests sent, ...'
    """
    total = StepSummary.total(parts.values())
    count = len(parts)
    return (
        f"{asset}: {count:,} partition{'s' if count != 1 else ''}, {total.rows:,} rows "
        f"(ok {total.ok:,}, failed {total.failed:,}), {total.requests_sent:,} requests sent, "
        f"{total.cache_hits:,} answered by the ledger, "
        f"{total.input_tokens + total.output_tokens:,} tokens, {money(total.cost_usd)} new spend, "
        + (
            f"{money(total.batch_cost_usd)} paid by batch ({total.batch_answered:,} answers), "
            if total.batch_answered
            else ""
        )
        + f"{money(total.saved_usd)} saved"
        + (
            f", {money(total.provider_cache_saved_usd)} saved by the provider's cache"
            if total.provider_cache_saved_usd > 0
            else ""
        )
    )
