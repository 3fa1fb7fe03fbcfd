"""How the spend asset shows its lines: a table, totals Dagster plots, a Markdown chart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.spend.figures import SpendLine
from llm_assets.summary import USD_DIGITS, money

TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("day", "string", "UTC day the responses arrived"),
        dg.TableColumn("asset", "string", "LLM asset that paid"),
        dg.TableColumn("partition", "string", "partition the requests were for"),
        dg.TableColumn("model", "string", "model the API reported"),
        dg.TableColumn("spend_usd", "float", "US dollars paid (new spend)"),
        dg.TableColumn("tokens", "int", "input + output tokens paid"),
        dg.TableColumn("requests", "int", "paid requests"),
        dg.TableColumn("saved_by_ledger_usd", "float", "what the ledger's answers would cost"),
        dg.TableColumn(
            "saved_by_provider_cache_usd", "float", "what the provider's prompt cache took off"
        ),
        dg.TableColumn("saved_by_batch_usd", "float", "what the Batch API discount saved"),
        dg.TableColumn("failure_rate", "float", "failed rows / rows materialized"),
        dg.TableColumn("rows", "int", "rows materialized"),
    ]
)

#: The table shown in the UI: who paid what and what was saved (the three savings summed), so
#: it fits the asset page of a 1440 px window without cut-off columns. Tokens, each saving and
#: the failure rate are totals above, and columns of the stored table.
_SHOWN = ("day", "asset", "partition", "model", "spend_usd", "requests")
UI_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        *(c for c in TABLE_SCHEMA.columns if c.name in _SHOWN),
        dg.TableColumn("saved_usd", "float", "saved by the ledger, the provider's cache and batch"),
    ]
)
_UI_COLUMNS = [c.name for c in UI_TABLE_SCHEMA.columns]

_BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉"


def spend_frame(lines: Sequence[SpendLine]) -> pd.DataFrame:
    """The lines as a table, one row per day, asset and model (stored by the IO manager).

    Examples:
        >>> frame = spend_frame([SpendLine("2026-11-01", "a", "m", spend_usd=0.5)])
        >>> float(frame.loc[0, "spend_usd"])
        0.5
    """
    columns = [column.name for column in TABLE_SCHEMA.columns]
    return pd.DataFrame([_record(line) for line in lines], columns=columns)


def spend_metadata(lines: Sequence[SpendLine], *, max_table_rows: int = 200) -> dict[str, Any]:
    """Totals (numbers Dagster plots across materializations), the table and the chart.

    Args:
        lines: Spend lines, newest day first.
        max_table_rows: Lines shown in the UI table (the stored table keeps them all).

    Returns:
        Materialization metadata.

    Examples:
        >>> md = spend_metadata([SpendLine("2026-11-01", "a", "m", requests=3, spend_usd=0.5)])
        >>> md["spend_usd"].value, md["requests"], md["spend"]  # doctest: +NORMALIZE_WHITESPACE
        (0.5, 3, "$0.5000 paid for 3 requests and 0 tokens; saved: $0 by the ledger,
                  $0 by the provider's cache, $0 by batch pricing")
    """
    total = SpendLine.total(lines)
    shown = list(lines[:max_table_rows])
    return {
        "spend": totals_line(total),
        "spend_usd": dg.MetadataValue.float(round(total.spend_usd, USD_DIGITS)),
        "tokens": total.tokens,
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "requests": total.requests,
        "saved_by_ledger_usd": dg.MetadataValue.float(round(total.saved_by_ledger_usd, USD_DIGITS)),
        "saved_by_provider_cache_usd": dg.MetadataValue.float(
            round(total.saved_by_provider_cache_usd, USD_DIGITS)
        ),
        "saved_by_batch_usd": dg.MetadataValue.float(round(total.saved_by_batch_usd, USD_DIGITS)),
        "failure_rate": dg.MetadataValue.float(round(total.failure_rate, 4)),
        "rows": total.rows,
        "failed": total.failed,
        "dagster/row_count": len(lines),
        "spend_table": dg.MetadataValue.table(
            records=[dg.TableRecord(_ui_record(line)) for line in shown], schema=UI_TABLE_SCHEMA
        ),
        "chart": dg.MetadataValue.md(spend_chart(lines)),
    }


def totals_line(total: SpendLine) -> str:
    """The totals as a person reads them: paid, and what each kind of saving took off.

    Examples:
        >>> totals_line(SpendLine("all", "all", "all", requests=1200, spend_usd=1.5,
        ...                       saved_by_provider_cache_usd=0.25))  # doctest: +ELLIPSIS
        "$1.50 paid for 1,200 requests and 0 tokens; saved: $0 by the ledger, $0.2500 by ..."
    """
    return (
        f"{money(total.spend_usd)} paid for {total.requests:,} requests and {total.tokens:,} "
        f"tokens; saved: {money(total.saved_by_ledger_usd)} by the ledger, "
        f"{money(total.saved_by_provider_cache_usd)} by the provider's cache, "
        f"{money(total.saved_by_batch_usd)} by batch pricing"
    )


def spend_chart(lines: Sequence[SpendLine]) -> str:
    """Markdown bar charts of spend by day, partition, model and asset, and the totals.

    Examples:
        >>> lines = [SpendLine("2026-11-02", "a", "m", spend_usd=0.2),
        ...          SpendLine("2026-11-01", "a", "m", spend_usd=0.1)]
        >>> print(spend_chart(lines).splitlines()[4])
        | 2026-11-02 | $0.2000 | `████████████████████████` |
    """
    total = SpendLine.total(lines)
    by_day = _grouped(lines, lambda line: line.day)
    by_partition = _grouped(lines, lambda line: f"{line.asset} {line.partition}".strip())
    by_model = _grouped(lines, lambda line: line.model)
    by_asset = _grouped(lines, lambda line: line.asset)
    biggest = _largest_first
    parts = [
        "### Spend by day (USD)",
        "",
        *_bars("day", sorted(by_day.items(), reverse=True)[:31]),
        "",
        "### Spend by partition (USD)",
        "",
        *_bars("asset partition", biggest(by_partition)[:31]),
        "",
        "### Spend by model (USD)",
        "",
        *_bars("model", biggest(by_model)),
        "",
        "### Spend by asset (USD)",
        "",
        *_bars("asset", biggest(by_asset)),
        "",
        f"**Total:** {totals_line(total)}; "
        f"{total.failed:,} of {total.rows:,} rows failed ({total.failure_rate:.1%}).",
    ]
    return "\n".join(parts)


def _largest_first(spend: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(spend.items(), key=lambda item: (-item[1], item[0]))


def _grouped(lines: Sequence[SpendLine], key: Callable[[SpendLine], str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in lines:
        out[key(line)] = out.get(key(line), 0.0) + line.spend_usd
    return out


def _bars(label: str, items: Sequence[tuple[str, float]]) -> list[str]:
    if not items:
        return ["(nothing paid yet)"]
    top = max(value for _, value in items) or 1.0
    rows = [f"| {label} | spend | |", "| --- | ---: | --- |"]
    for name, value in items:
        eighths = round(value / top * _BAR_WIDTH * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        rows.append(f"| {name} | {_dollars(value)} | `{bar or '▏'}` |")
    return rows


def _dollars(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _ui_record(line: SpendLine) -> dict[str, Any]:
    record = _record(line)
    saved = line.saved_by_ledger_usd + line.saved_by_provider_cache_usd + line.saved_by_batch_usd
    record["saved_usd"] = round(saved, USD_DIGITS)
    return {name: record[name] for name in _UI_COLUMNS}


def _record(line: SpendLine) -> dict[str, Any]:
    return {
        "day": line.day,
        "asset": line.asset,
        "partition": line.partition,
        "model": line.model,
        "spend_usd": round(line.spend_usd, USD_DIGITS),
        "tokens": line.tokens,
        "requests": line.requests,
        "saved_by_ledger_usd": round(line.saved_by_ledger_usd, USD_DIGITS),
        "saved_by_provider_cache_usd": round(line.saved_by_provider_cache_usd, USD_DIGITS),
        "saved_by_batch_usd": round(line.saved_by_batch_usd, USD_DIGITS),
        "failure_rate": round(line.failure_rate, 4),
        "rows": line.rows,
    }
