"""Prices per million tokens, and the cost of one call as the provider bills it.

Prices come from `genai-prices <https://github.com/pydantic/genai-prices>`_, the maintained
price table of many providers (cached input, tiered and dated prices included), for the
provider ``LLMResource.price_provider`` names (``"openai"`` by default). On top of it sit the
simulator's own models (``sim-small``, ``sim-large``) and ``LLMResource(prices={...})``, which
override both for the models they name (a dated snapshot such as ``gpt-4o-mini-2024-07-18``
matches an override named by its prefix). A model that none of them knows costs 0 and is named
in the step's metadata (``unpriced_models``) rather than failing the run.

Prompt tokens the provider answered from its prompt cache (``usage.prompt_tokens_details.
cached_tokens``) are billed at the model's cached-input price; reasoning tokens are part of the
completion tokens and billed as output.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import TieredPrices
from pydantic import Field

DEFAULT_PROVIDER = "openai"


class ModelPrice(dg.Config):
    """USD per one million tokens for one model."""

    input_per_million: float = Field(description="USD per 1M prompt (input) tokens.")
    output_per_million: float = Field(description="USD per 1M completion (output) tokens.")
    cached_input_per_million: float | None = Field(
        default=None,
        description="USD per 1M prompt tokens read from the provider's prompt cache; "
        "None when the provider gives no discount for them (billed as input).",
    )

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """US dollars for one call's usage at these prices.

        Examples:
            >>> price = ModelPrice(input_per_million=1.0, output_per_million=4.0,
            ...                    cached_input_per_million=0.25)
            >>> price.cost(1_000_000, 0, cached_input_tokens=1_000_000)
            0.25
        """
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = self.input_per_million
        if self.cached_input_per_million is not None:
            cached_rate = self.cached_input_per_million
        return (
            (input_tokens - cached) * self.input_per_million
            + cached * cached_rate
            + output_tokens * self.output_per_million
        ) / 1_000_000


# The simulator's models are no provider's: their nominal prices mirror gpt-4o-mini and gpt-4o
# (input, cached input, output per 1M tokens) so that demo figures read like real ones.
SIMULATOR_PRICES: dict[str, ModelPrice] = {
    model: ModelPrice(
        input_per_million=uncached, cached_input_per_million=cached, output_per_million=output
    )
    for model, (uncached, cached, output) in {
        "sim-small": (0.15, 0.075, 0.60),
        "sim-large": (2.50, 1.25, 10.00),
    }.items()
}


def find_price(
    model: str, prices: Mapping[str, ModelPrice] | None = None, provider: str = DEFAULT_PROVIDER
) -> ModelPrice | None:
    """The price of ``model``: an override, the simulator's, or the provider's list price.

    A list price tiered by prompt length is given by its base tier; ``cost_usd`` bills the
    tier a call falls in.

    Args:
        model: A model name as requested or as reported (``gpt-4o-mini-2024-07-18``).
        prices: Overrides by model name (``LLMResource.prices``); a name matches itself and the
            models it is the longest prefix of.
        provider: The genai-prices provider id whose list prices apply.

    Returns:
        The price, or ``None`` when no table knows the model.

    Examples:
        >>> find_price("gpt-4o-mini-2024-07-18").cached_input_per_million
        0.075
        >>> find_price("gpt-4o", {"gpt-4o": ModelPrice(input_per_million=2,
        ...                                            output_per_million=8)}).input_per_million
        2.0
        >>> find_price("my-finetune") is None
        True
    """
    listed = _listed(model, provider)
    return _own_price(model, prices) or (listed.price if listed else None)


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, ModelPrice] | None = None,
    cached_input_tokens: int = 0,
    provider: str = DEFAULT_PROVIDER,
) -> float:
    """The cost of one call in USD, as billed; 0.0 when no table knows the model.

    Args:
        model: The model that answered.
        input_tokens: All prompt tokens, cached ones included (``usage.prompt_tokens``).
        output_tokens: Completion tokens, reasoning tokens included.
        prices: Overrides by model name (``LLMResource.prices``).
        cached_input_tokens: The prompt tokens read from the provider's cache, billed at
            ``cached_input_per_million`` when the model has that price.
        provider: The genai-prices provider id whose list prices apply.

    Examples:
        >>> round(cost_usd("gpt-4o-mini", 1_000_000, 0), 2)
        0.15
        >>> round(cost_usd("gpt-4o-mini", 1_000_000, 0, cached_input_tokens=500_000), 4)
        0.1125
    """
    price = _own_price(model, prices)
    if price is not None:
        return price.cost(input_tokens, output_tokens, cached_input_tokens)
    listed = _listed(model, provider)
    if listed is None:
        return 0.0
    if not listed.tiered:  # one rate per kind of token: no need to ask genai-prices each call
        return listed.price.cost(input_tokens, output_tokens, cached_input_tokens)
    cached = min(max(cached_input_tokens, 0), input_tokens)
    usage = genai_prices.Usage(
        input_tokens=input_tokens, cache_read_tokens=cached, output_tokens=output_tokens
    )
    return float(genai_prices.calc_price(usage, model, provider_id=provider).total_price)


def cache_saving_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int,
    prices: Mapping[str, ModelPrice] | None = None,
    provider: str = DEFAULT_PROVIDER,
) -> float:
    """What the provider's prompt cache took off one call's bill, in USD.

    Examples:
        >>> round(cache_saving_usd("gpt-4o-mini", 2_000_000, 0, 1_000_000), 4)
        0.075
    """
    if cached_input_tokens <= 0:
        return 0.0
    full = cost_usd(model, input_tokens, output_tokens, prices, 0, provider)
    return full - cost_usd(
        model, input_tokens, output_tokens, prices, cached_input_tokens, provider
    )


@dataclass(frozen=True)
class PriceBook:
    """The overrides and the provider of one ``LLMResource``: what its calls cost.

    Examples:
        >>> book = PriceBook()
        >>> round(book.cost("gpt-4o-mini", 1_000_000, 0), 2), book.knows("my-finetune")
        (0.15, False)
    """

    overrides: Mapping[str, ModelPrice] = field(default_factory=dict)
    provider: str = DEFAULT_PROVIDER

    def cost(
        self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> float:
        """The billed cost of one call (see ``cost_usd``)."""
        return cost_usd(
            model, input_tokens, output_tokens, self.overrides, cached_input_tokens, self.provider
        )

    def cache_saving(
        self, model: str, input_tokens: int, output_tokens: int, cached_input_tokens: int
    ) -> float:
        """What the provider's prompt cache saved on one call (see ``cache_saving_usd``)."""
        return cache_saving_usd(
            model, input_tokens, output_tokens, cached_input_tokens, self.overrides, self.provider
        )

    def knows(self, model: str) -> bool:
        """Whether any table prices ``model`` (an unknown model is billed as 0 and flagged)."""
        return not model or find_price(model, self.overrides, self.provider) is not None


def _own_price(model: str, prices: Mapping[str, ModelPrice] | None) -> ModelPrice | None:
    """An override of ``prices`` or a simulator model's price (longest prefix match)."""
    for table in (prices or {}, SIMULATOR_PRICES):
        if model in table:
            return table[model]
        matches = [name for name in table if model.startswith(name)]
        if matches:
            return table[max(matches, key=len)]
    return None


@dataclass(frozen=True)
class _ListedPrice:
    price: ModelPrice
    #: Priced by prompt length (``cost_usd`` then bills the tier with genai-prices).
    tiered: bool


@functools.lru_cache(maxsize=512)
def _listed(model: str, provider: str) -> _ListedPrice | None:
    """genai-prices' current price of ``model`` at ``provider`` (``None`` when it has none)."""
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    listed = info.get_prices(datetime.now(UTC))
    rates = (listed.input_mtok, listed.output_mtok, listed.cache_read_mtok)
    price = ModelPrice(
        input_per_million=_rate(listed.input_mtok) or 0.0,
        output_per_million=_rate(listed.output_mtok) or 0.0,
        cached_input_per_million=_rate(listed.cache_read_mtok),
    )
    return _ListedPrice(price, any(isinstance(rate, TieredPrices) for rate in rates))


def _rate(value: Decimal | TieredPrices | None) -> float | None:
    """A per-million rate; a tiered one by its base tier (``cost_usd`` bills the tiers)."""
    if value is None:
        return None
    return float(value.base if isinstance(value, TieredPrices) else value)
