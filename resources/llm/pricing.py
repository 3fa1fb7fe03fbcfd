"""Prices per million tokens, and the cost of one call.

Prices change; the defaults are the public list prices when this table was written and are
meant to be overridden with ``LLMResource(prices={...})``. A model the table does not know costs
0 and is flagged in the step's metadata rather than failing the run.

Prompt tokens the provider answered from its prompt cache (``usage.prompt_tokens_details.
cached_tokens``) are billed at the model's cached-input price; reasoning tokens are part of the
completion tokens and billed as output.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from pydantic import Field


class ModelPrice(dg.Config):
    """USD per one million tokens for one model."""

    input_per_million: float = Field(description="USD per 1M prompt (input) tokens.")
    output_per_million: float = Field(description="USD per 1M completion (output) tokens.")
    cached_input_per_million: float | None = Field(
        default=None,
        description="USD per 1M prompt tokens read from the provider's prompt cache; "
        "None when the provider gives no discount for them (billed as input).",
    )


# USD per 1M tokens: input, cached input, output. The simulator's nominal prices mirror
# gpt-4o-mini and gpt-4o so demo figures look like real ones.
_LIST_PRICES: dict[str, tuple[float, float, float]] = {
    "sim-small": (0.15, 0.075, 0.60),
    "sim-large": (2.50, 1.25, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
}

DEFAULT_PRICES: dict[str, ModelPrice] = {
    model: ModelPrice(
        input_per_million=uncached, cached_input_per_million=cached, output_per_million=output
    )
    for model, (uncached, cached, output) in _LIST_PRICES.items()
}


def find_price(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """Finds the price of ``model``, matching dated snapshots by their longest known prefix.

    Args:
        model: A model name as requested or as reported (``gpt-4o-mini-2024-07-18``).
        prices: The price table.

    Returns:
        The price, or ``None`` when no entry matches.

    Examples:
        >>> find_price("gpt-4o-mini-2024-07-18", DEFAULT_PRICES).input_per_million
        0.15
    """
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice],
    cached_input_tokens: int = 0,
) -> float:
    """The cost of one call in USD, as billed; 0.0 when the model has no price.

    Args:
        model: The model that answered.
        input_tokens: All prompt tokens, cached ones included (``usage.prompt_tokens``).
        output_tokens: Completion tokens, reasoning tokens included.
        prices: The price table.
        cached_input_tokens: The prompt tokens read from the provider's cache, billed at
            ``cached_input_per_million`` when the model has that price.

    Examples:
        >>> round(cost_usd("gpt-4o-mini", 1_000_000, 0, DEFAULT_PRICES), 2)
        0.15
        >>> round(cost_usd("gpt-4o-mini", 1_000_000, 0, DEFAULT_PRICES, 500_000), 4)
        0.1125
    """
    price = find_price(model, prices)
    if price is None:
        return 0.0
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_rate = price.input_per_million
    if price.cached_input_per_million is not None:
        cached_rate = price.cached_input_per_million
    return (
        (input_tokens - cached) * price.input_per_million
        + cached * cached_rate
        + output_tokens * price.output_per_million
    ) / 1_000_000
