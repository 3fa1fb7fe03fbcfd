"""What materializing partitions of an ``llm_asset`` would cost, found without sending anything.

The forecast renders every row as the step would (same templates, ``prepare``, model and
request hashes), asks the ledger which requests it already answers, and prices the rest. Both
token counts learn from the asset's newest paid requests in the ledger: prompts are counted
locally and scaled by what the provider billed for the prompts counted the same way, and
answers are as long as those answers were on average. Without history, prompts are the local
count and answers the task's ``expected_output_tokens`` (``max_output_tokens`` as an upper
bound). Dollars are given at the online price and at the
Batch API price; time at the rate limit the endpoint stated or a run learned (``rpm_limit`` /
``tpm_limit``, or the ``sqlite``/``postgres`` rate-limit store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from llm_assets.recipes import (
    CodeLocation,
    check_partitions,
    find_recipe,
    recipe_resources,
    resources_of,
    upstream_frames,
)
from llm_assets.rendering import check_columns, plan_chunks
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.ledger.rollup import recent_usage
from llm_assets.summary import money
from llm_assets.task import LLMTask

__all__ = ["Forecast", "forecast_partitions"]

#: Paid requests of the asset read to learn its answers' length and its billed prompt size.
HISTORY_REQUESTS = 500


@dataclass(frozen=True)
class Forecast:
    """What materializing some partitions of an ``llm_asset`` would send and cost.

    Attributes:
        asset: The asset key.
        partitions: The partitions forecast (``[None]`` for an unpartitioned asset).
        rows: Input rows (after ``prepare``).
        ledger_hits: Unique requests the ledger already answers (paid before, paid never again).
        requests: Unique requests to send.
        input_tokens: Their prompt tokens, counted locally (scaled by ``input_tokens_source``).
        input_tokens_source: How the prompt tokens were counted.
        output_tokens: Their output tokens, as estimated (``output_tokens_per_request`` each).
        output_tokens_per_request: The estimate used per request.
        output_tokens_source: Where that estimate comes from.
        online_usd: The requests at the online price.
        batch_usd: The requests at the Batch API price.
        minutes_at_limit: Sending time at the known rate limit; ``None`` while none is known.
        model: The model the requests go to.
        priced: Whether a price table knows the model (else the dollars are 0).
    """

    asset: str
    partitions: list[str | None]
    rows: int
    ledger_hits: int
    requests: int
    input_tokens: int
    input_tokens_source: str
    output_tokens: int
    output_tokens_per_request: float
    output_tokens_source: str
    online_usd: float
    batch_usd: float
    minutes_at_limit: float | None
    model: str
    priced: bool

    def to_dict(self) -> dict[str, Any]:
        """The forecast as plain JSON-ready values."""
        return asdict(self)

    def describe(self) -> str:
        """The forecast as lines a person reads.

        Examples:
            >>> f = Forecast("a", ["2026-11-01"], 10, 4, 6, 600, "counted", 240, 40.0, "history",
            ...              0.0012, 0.0006, None, "gpt-4o-mini", True)
            >>> print(f.describe().splitlines()[0])
            a, 1 partition (2026-11-01): 10 rows, 4 answered by the ledger, 6 requests to send
        """
        count = len(self.partitions)
        shown = ", ".join(str(p) for p in self.partitions[:3])
        if count > 3:
            shown += f", ... {self.partitions[-1]}"
        scope = f"{count:,} partition{'s' if count != 1 else ''} ({shown})"
        if self.partitions == [None]:
            scope = "unpartitioned"
        time = (
            f"about {self.minutes_at_limit:,.1f} min at the rate limit"
            if self.minutes_at_limit is not None
            else "time unknown until a run learns the rate limit (rate_limit_store='sqlite')"
        )
        price = "" if self.priced else f" ('{self.model}' has no price: set LLMResource.prices)"
        return "\n".join(
            [
                f"{self.asset}, {scope}: {self.rows:,} rows, {self.ledger_hits:,} answered by "
                f"the ledger, {self.requests:,} requests to send",
                f"tokens: {self.input_tokens:,} input ({self.input_tokens_source}), "
                f"{self.output_tokens:,} output "
                f"({self.output_tokens_per_request:,.0f} per request, {self.output_tokens_source})",
                f"cost on {self.model}: {money(self.online_usd)} online, "
                f"{money(self.batch_usd)} by batch{price}",
                f"time: {time}",
            ]
        )


def forecast_partitions(
    defs: CodeLocation,
    asset: str,
    partitions: Sequence[str | None] | None = None,
    *,
    task: LLMTask | None = None,
    resources: Mapping[str, Any] | None = None,
) -> Forecast:
    """Forecasts materializing ``partitions`` of the ``llm_asset`` ``asset``, sending nothing.

    The upstream partitions are read through their ``ParquetIOManager`` and the ledger and
    ``LLMResource`` are those bound in ``defs``, as a run would use them.

    Args:
        defs: The code location's definitions.
        asset: The asset key, e.g. ``review_insights``.
        partitions: Partition keys; ``None`` for an unpartitioned asset.
        task: Forecast this task (an experiment's candidate) instead of the asset's own.
        resources: Initialized resources by key, instead of those bound in ``defs`` (a run's).

    Returns:
        The forecast.

    Raises:
        UserError: Not an ``llm_asset``, an unknown partition, an upstream partition not
            materialized yet, or a column the prompts need is missing.

    Examples:
        .. code-block:: python

            from llm_assets import forecast_partitions
            from reviews_example.definitions import defs

            print(forecast_partitions(defs, "review_insights", ["2026-11-02"]).describe())
    """
    key = dg.AssetKey.from_user_string(asset)
    assets_def, recipe = find_recipe(defs, key, asset)
    keys = check_partitions(assets_def, asset, partitions)
    resources = resources if resources is not None else resources_of(defs)
    llm, ledger = recipe_resources(recipe, resources, asset)
    frames = upstream_frames(defs, recipe, keys, asset, resources)
    task = task or recipe.task
    model = task.model or llm.model
    passthrough = recipe.options.passthrough_columns
    for frame in frames.values():
        check_columns(task, frame, asset, recipe.upstream.to_user_string(), passthrough)
    rows, prompt_tokens = 0, dict[str, int]()
    window = llm.context_window(model)
    for chunk_rows, chunk_requests in plan_chunks(task, frames, model, window, passthrough):
        rows += len(chunk_rows)
        for request_key, request in chunk_requests.items():
            prompt_tokens.setdefault(request_key, request.est_prompt_tokens)
    found = _answered(ledger, list(prompt_tokens))
    misses = [k for k in prompt_tokens if k not in found]
    history = _History.of(ledger, task, asset)
    per_request, source = history.output_estimate(task)
    prompts = {k: round(prompt_tokens[k] * history.input_ratio) for k in misses}
    input_tokens = sum(prompts.values())
    prices = llm.price_book
    online = float(
        sum(prices.cost(model, tokens, round(per_request)) for tokens in prompts.values())
    )
    output_tokens = round(per_request * len(misses))
    rpm, tpm = llm.known_rate_limits()
    minutes = None
    if rpm or tpm:
        by_requests = len(misses) / rpm if rpm else 0.0
        minutes = max(by_requests, (input_tokens + output_tokens) / tpm if tpm else 0.0)
    return Forecast(
        asset=asset,
        partitions=list(keys),
        rows=rows,
        ledger_hits=len(found),
        requests=len(misses),
        input_tokens=input_tokens,
        input_tokens_source=history.input_source(),
        output_tokens=output_tokens,
        output_tokens_per_request=per_request,
        output_tokens_source=source,
        online_usd=online,
        batch_usd=online * llm.batch_discount,
        minutes_at_limit=minutes,
        model=model,
        priced=prices.knows(model),
    )


def _answered(ledger: ResponseLedger | None, keys: list[str]) -> set[str]:
    """The keys the ledger answers: a presence check, no response bodies read."""
    if ledger is None or not keys:
        return set()
    return ledger.get_backend().contains_many(keys)


@dataclass(frozen=True)
class _History:
    """What the asset's newest paid requests teach: billed vs counted prompts, answer length."""

    requests: int = 0
    #: Billed prompt tokens over the local count of the same prompts (1.0 without history).
    input_ratio: float = 1.0
    output_mean: float = 0.0

    @classmethod
    def of(cls, ledger: ResponseLedger | None, task: LLMTask, asset: str) -> _History:
        if ledger is None:
            return cls()
        paid = recent_usage(ledger.get_backend(), asset, limit=HISTORY_REQUESTS)
        counted = sum(task.estimate_prompt_tokens(usage.messages) for usage in paid)
        billed = sum(usage.input_tokens for usage in paid)
        if not paid or not counted or not billed:
            return cls()
        output = sum(usage.output_tokens for usage in paid) / len(paid)
        return cls(len(paid), billed / counted, output)

    def input_source(self) -> str:
        """How the prompt tokens were counted."""
        if not self.requests:
            return "counted locally"
        return (
            f"counted locally, scaled by {self.input_ratio:.2f} as the provider billed such prompts"
        )

    def output_estimate(self, task: LLMTask) -> tuple[float, str]:
        """Output tokens per request, and where the figure comes from."""
        if self.requests:
            return self.output_mean, f"mean of the {self.requests:,} newest answers in the ledger"
        if task.expected_output_tokens is not None:
            return float(task.output_tokens_for_estimates), "the task's expected_output_tokens"
        return float(task.max_output_tokens), "max_output_tokens, an upper bound"
