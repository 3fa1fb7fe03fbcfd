"""Prices: the provider's list prices from genai-prices, overrides on top, unknown models named.

A model no table knows is billed as $0 and named in the partition's ``unpriced_models``, never
silently: a model an OpenAI-compatible server hosts is the common case, priced with
``LLMResource(prices=...)``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from pydantic import BaseModel

from llm_assets import LLMTask, llm_asset
from llm_assets.resources.llm import LLMResource, ModelPrice, PriceBook, cost_usd, find_price
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources

pytestmark = pytest.mark.timeout(120)

# An OpenAI-compatible server's own model (say, behind vLLM): no provider lists its price.
OWN_MODEL = "acme-labeler-7b"


def test_list_prices_come_from_genai_prices_for_the_named_provider() -> None:
    # gpt-4o-mini's list price: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    price = find_price("gpt-4o-mini-2024-07-18")
    assert price is not None
    assert (price.input_per_million, price.cached_input_per_million) == (0.15, 0.075)
    assert price.output_per_million == 0.60
    assert cost_usd("gpt-4o-mini", 1_000_000, 1_000_000, cached_input_tokens=400_000) == (
        pytest.approx(0.6 * 0.15 + 0.4 * 0.075 + 0.60)
    )
    # A provider that does not list the model prices nothing: the figure is not guessed.
    assert find_price("gpt-4o-mini", provider="anthropic") is None
    assert PriceBook(provider="anthropic").cost("gpt-4o-mini", 1000, 1000) == 0.0


def test_overrides_sit_on_top_of_the_list_prices() -> None:
    mine = ModelPrice(input_per_million=1.0, output_per_million=2.0)
    llm = LLMResource(api_key="sk-test", prices={"gpt-4o-mini": mine})
    book = llm.price_book
    # The override wins for its model and its dated snapshots ...
    assert book.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(3.0)
    # ... and without a cached price, cached input is billed as input.
    assert book.cost("gpt-4o-mini", 1_000_000, 0, cached_input_tokens=1_000_000) == 1.0
    # Every other model keeps its list price, and the simulator's models theirs.
    assert book.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert book.cost("sim-small", 1_000_000, 0) == pytest.approx(0.15)
    # A fine-tune has its own list price (gpt-4o-mini's: twice the base model's).
    assert book.cost("ft:gpt-4o-mini-2024-07-18:acme::a1b2c3", 1_000_000, 0) == pytest.approx(0.30)
    assert not book.knows(OWN_MODEL)


class Label(BaseModel):
    label: str


@pytest.mark.parametrize("priced", [False, True])
def test_a_model_no_table_knows_is_named_and_an_override_prices_it(
    priced: bool,
    simulator: SimulatorServer,
    sqlite_instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    @dg.asset(name="notes")
    def notes() -> pd.DataFrame:
        return pd.DataFrame({"id": [1, 2, 3], "text": ["a", "b", "c"]})

    simulator.configure(accepted_models=[OWN_MODEL])
    task = LLMTask(
        name="labels",
        user_prompt="Label: {text}",
        output_schema=Label,
        id_column="id",
        model=OWN_MODEL,
    )
    prices = {"acme-labeler": ModelPrice(input_per_million=0.30, output_per_million=1.20)}
    resources = make_resources(simulator, tmp_path, prices=prices if priced else {})
    result = dg.materialize(
        [notes, llm_asset(task, upstream=notes)], resources=resources, instance=sqlite_instance
    )
    assert result.success
    metadata = result.asset_materializations_for_node("labels")[0].metadata
    table = pd.read_parquet(tmp_path / "data" / "labels.parquet")
    assert set(table["llm_model"]) == {OWN_MODEL}
    if not priced:
        assert metadata["unpriced_models"].value == OWN_MODEL
        assert metadata["cost_usd"].value == 0 and metadata["tokens"].value > 0
        return
    assert "unpriced_models" not in metadata
    billed = (
        table["llm_input_tokens"].sum() * 0.30 + table["llm_output_tokens"].sum() * 1.20
    ) / 1_000_000
    assert billed > 0
    assert metadata["cost_usd"].value == pytest.approx(billed, abs=2e-6)
