"""The provider's prompt cache: reported as the provider reports it, and priced as it bills it.

A prompt of at least 1,024 tokens whose beginning was answered before is partly read from
the provider's cache (``usage.prompt_tokens_details.cached_tokens``, in steps of 128 tokens),
and those tokens cost the model's cached-input price. A task with a long shared system prompt
is the common case: every row after the first shares it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import openai
import pandas as pd
import pytest
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

from llm_assets import LLMTask, llm_asset, llm_spend_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import SIMULATOR_PRICES
from llm_assets.simulator import SimulatorServer
from llm_assets.summary import money
from tests.conftest import TEST_API_KEY, make_resources

pytestmark = pytest.mark.timeout(120)

# 1,300 tokens of system prompt (four characters a token), 4 more for the message itself.
LONG_SYSTEM = "Read the review and label its sentiment. " * 126 + "x" * 34
assert len(LONG_SYSTEM) == 1300 * 4


def _ask(client: openai.OpenAI, user: str, system: str = LONG_SYSTEM) -> ChatCompletion:
    return client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
    )


def _cached(completion: ChatCompletion) -> int:
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    return completion.usage.prompt_tokens_details.cached_tokens or 0


def test_a_repeated_prefix_of_1024_tokens_or_more_is_reported_cached_in_128_token_steps(
    simulator: SimulatorServer,
) -> None:
    client = openai.OpenAI(base_url=simulator.base_url, api_key=TEST_API_KEY, max_retries=0)
    first = _ask(client, "first review")
    assert _cached(first) == 0  # nothing seen yet
    second = _ask(client, "second review")
    # The shared system message covers tokens 0..1304: the longest 128-step prefix is 1,280.
    assert _cached(second) == 1280
    assert second.usage is not None and second.usage.prompt_tokens > 1280
    # The same request again: everything up to its last full step.
    again = _ask(client, "second review")
    assert _cached(again) == (again.usage.prompt_tokens // 128) * 128  # type: ignore[union-attr]
    # Under 1,024 tokens nothing is cached, however often it is sent.
    short = "Label it. " * 40
    assert [_cached(_ask(client, "a review", short)) for _ in range(2)] == [0, 0]
    # Another model has a cache of its own.
    other = client.chat.completions.create(
        model="sim-large",
        messages=[{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "x"}],
    )
    assert _cached(other) == 0
    assert simulator.stats()["cached_tokens"] == 1280 + _cached(again)


class Sentiment(BaseModel):
    sentiment: str


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_an_asset_with_a_long_shared_system_prompt_costs_what_the_provider_bills(
    storage: str, simulator: SimulatorServer, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On a SQLite instance and ledger, and on a Postgres instance and ledger."""
    rows = 12

    @dg.asset(name="reviews")
    def reviews() -> pd.DataFrame:
        return pd.DataFrame({"id": range(rows), "text": [f"review {i}: fine" for i in range(rows)]})

    task = LLMTask(
        name="sentiments",
        system_prompt=LONG_SYSTEM,
        user_prompt="Review: {text}",
        output_schema=Sentiment,
        id_column="id",
    )
    # One request at a time, as the provider's cache would see a warmed prefix.
    resources = make_resources(simulator, tmp_path, max_concurrency=1)
    instance: dg.DagsterInstance = request.getfixturevalue(f"{storage}_instance")
    if storage == "postgres":
        url = request.getfixturevalue("postgres_url")
        resources["ledger"] = ResponseLedger(backend="postgres", postgres_url=url)
    sentiments = llm_asset(task, upstream=reviews)
    spend = llm_spend_asset(assets=[sentiments])
    result = dg.materialize([reviews, sentiments], resources=resources, instance=instance)
    assert result.success

    stats = simulator.stats()
    assert stats["chat_completions"] == rows
    cached, prompt, completion = (
        stats["cached_tokens"],
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    assert cached == (rows - 1) * 1280  # every row after the first reads the system prompt
    # The bill, by hand from the simulator's own counters and gpt-4o-mini's list prices:
    # $0.15 per 1M input, $0.075 per 1M cached input, $0.60 per 1M output.
    billed = ((prompt - cached) * 0.15 + cached * 0.075 + completion * 0.60) / 1_000_000
    uncached = (prompt * 0.15 + completion * 0.60) / 1_000_000
    assert billed < uncached * 0.75  # the cache is most of the input here

    metadata = result.asset_materializations_for_node("sentiments")[0].metadata
    assert metadata["cost_usd"].value == pytest.approx(billed, abs=2e-6)
    # What the provider's cache took off, beside what the ledger saved, in figures and words.
    assert metadata["cached_input_tokens"].value == cached
    assert metadata["provider_cache_saved_usd"].value == pytest.approx(uncached - billed, abs=2e-6)
    line = metadata["spend"].value
    assert line.endswith(f"{money(uncached - billed)} saved by the provider's cache")
    assert "unpriced_models" not in metadata
    table = pd.read_parquet(tmp_path / "data" / "sentiments.parquet")
    assert table["llm_cost_usd"].sum() == pytest.approx(billed, rel=1e-9)
    # Per row: the first row paid for the whole prompt, every later one read 1,280 from cache.
    assert sorted(table["llm_cached_input_tokens"]) == [0] + [1280] * (rows - 1)
    assert (table["llm_reasoning_tokens"] == 0).all()
    price = SIMULATOR_PRICES["sim-small"]
    assert (price.input_per_million, price.cached_input_per_million) == (0.15, 0.075)

    # The spend asset: paid as billed, and the cache's saving beside the ledger's.
    shown = dg.materialize(
        [reviews, sentiments, spend], selection=[spend.key], resources=resources, instance=instance
    )
    figures = shown.asset_materializations_for_node("llm_spend")[0].metadata
    assert figures["spend_usd"].value == pytest.approx(billed, abs=2e-6)
    assert figures["saved_by_provider_cache_usd"].value == pytest.approx(
        uncached - billed, abs=2e-6
    )
    assert figures["saved_by_ledger_usd"].value == 0
    assert f"{money(uncached - billed)} by the provider's cache" in figures["spend"].value
