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
        dg.TableColumn("model", "string", "model the API reported"),
        dg.TableColumn("spend_usd", "float", "US dollars paid (new spend)"),
        dg.TableColumn("tokens", "int", "input + output tokens paid"),
        dg.TableColumn("requests", "int", "paid requests"),
        dg.TableColumn("saved_by_cache_usd", "float", "what the ledger's answers would have cost"),
        dg.TableColumn("saved_by_batch_usd", "float", "what the Batch API discount saved"),
        dg.TableColumn("failure_rate", "float", "failed rows / rows materialized"),
        dg.TableColumn("rows", "int", "rows materialized"),
    ]
)

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
        >>> md["spend_usd"].value, md["requests"], md["spend"]
        (0.5, 3, '$0.5000 paid, $0 saved by the ledger, $0 saved by batch pricing')
    """
    total = SpendLine.total(lines)
    shown = list(lines[:max_table_rows])
    return {
        "spend": (
            f"{money(total.spend_usd)} paid, {money(total.saved_by_cache_usd)} saved by the "
            f"ledger, {money(total.saved_by_batch_usd)} saved by batch pricing"
        ),
        "spend_usd": dg.MetadataValue.float(round(total.spend_usd, USD_DIGITS)),
        "tokens": total.tokens,
        "input_tokens": total.input_tokens,
        "output_tokens": total.output_tokens,
        "requests": total.requests,
        "saved_by_cache_usd": dg.MetadataValue.float(round(total.saved_by_cache_usd, USD_DIGITS)),
        "saved_by_batch_usd": dg.MetadataValue.float(round(total.saved_by_batch_usd, USD_DIGITS)),
        "failure_rate": dg.MetadataValue.float(round(total.failure_rate, 4)),
        "rows": total.rows,
        "failed": total.failed,
        "dagster/row_count": len(lines),
        "spend_by_day_asset_model": dg.MetadataValue.table(
            records=[dg.TableRecord(_record(line)) for line in shown], schema=TABLE_SCHEMA
        ),
        "chart": dg.MetadataValue.md(spend_chart(lines)),
    }


def spend_chart(lines: Sequence[SpendLine]) -> str:
    """A Markdown bar chart of spend by day and by asset, and the totals.

    Examples:
        >>> lines = [SpendLine("2026-11-02", "a", "m", spend_usd=0.2),
        ...          SpendLine("2026-11-01", "a", "m", spend_usd=0.1)]
        >>> print(spend_chart(lines).splitlines()[4])
        | 2026-11-02 | $0.2000 | `████████████████████████` |
    """
    total = SpendLine.total(lines)
    by_day = _grouped(lines, lambda line: line.day)
    by_asset = _grouped(lines, lambda line: line.asset)
    parts = [
        "### Spend by day (USD)",
        "",
        *_bars("day", sorted(by_day.items(), reverse=True)[:31]),
        "",
        "### Spend by asset (USD)",
        "",
        *_bars("asset", sorted(by_asset.items(), key=lambda item: -item[1])),
        "",
        f"**Total:** {money(total.spend_usd)} paid for {total.requests:,} requests and "
        f"{total.tokens:,} tokens; {money(total.saved_by_cache_usd)} saved by the ledger, "
        f"{money(total.saved_by_batch_usd)} saved by batch pricing; "
        f"{total.failed:,} of {total.rows:,} rows failed ({total.failure_rate:.1%}).",
    ]
    return "\n".join(parts)


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


def _record(line: SpendLine) -> dict[str, Any]:
    return {
        "day": line.day,
        "asset": line.asset,
        "model": line.model,
        "spend_usd": round(line.spend_usd, USD_DIGITS),
        "tokens": line.tokens,
        "requests": line.requests,
        "saved_by_cache_usd": round(line.saved_by_cache_usd, USD_DIGITS),
        "saved_by_batch_usd": round(line.saved_by_batch_usd, USD_DIGITS),
        "failure_rate": round(line.failure_rate, 4),
        "rows": line.rows,
    }
