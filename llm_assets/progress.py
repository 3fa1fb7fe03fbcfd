"""Progress lines in the Dagster run log while a step sends requests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from llm_assets.resources.llm import EngineStats


def progress_logger(log: Any, asset: str, total: int) -> Callable[[EngineStats, int], None]:
    """A callback that logs rows done/total, requests/min, tokens, spend, ETA, concurrency.

    Examples:
        >>> import logging
        >>> report = progress_logger(logging.getLogger("x"), "insights", 10)
        >>> report(EngineStats(total=10, done=5, started_at=time.monotonic() - 1), 8)
    """

    def report(stats: EngineStats, concurrency: int) -> None:
        elapsed = max(1e-9, time.monotonic() - stats.started_at)
        per_min = stats.done / elapsed * 60
        eta = (total - stats.done) / (stats.done / elapsed) if stats.done else math.inf
        eta_txt = f"{eta:.0f}s" if math.isfinite(eta) else "?"
        log.info(
            f"{asset}: {stats.done}/{total} requests, {per_min:.0f} req/min, "
            f"{stats.input_tokens + stats.output_tokens:,} tokens, ${stats.cost_usd:.4f}, "
            f"ETA {eta_txt}, concurrency {concurrency}, 429s {stats.rate_limited}, "
            f"retries {stats.retries}, failed {stats.failed}"
        )

    return report
