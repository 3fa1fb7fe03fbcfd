"""The offline OpenAI simulator, exercised through the real ``openai`` SDK over real HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import math
import random
import struct
import time
import types
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

import llm_assets.simulator as simulator_package
from llm_assets.simulator import (
    SimulatorConfig,
    SimulatorProcess,
    SimulatorServer,
    estimate_prompt_tokens,
    estimate_tokens,
)
from llm_assets.simulator.__main__ import build_parser, config_from_args
from llm_assets.simulator.limits import format_duration
from llm_assets.simulator.phrases import PhraseMaker
from llm_assets.simulator.schema_fill import fill_schema


class Product(BaseModel):
    name: str = Field(max_length=40)
    category: Literal["phone", "laptop", "tablet"]


class Review(BaseModel):
    sentiment: Literal["positive", "neutral", "negative"]
    score: int = Field(ge=1, le=5)
    confidence: float = Field(ge=0.0, le=1.0)
    themes: list[str] = Field(min_length=1, max_length=3)
    product: Product
    reviewed_on: dt.date
    flagged_at: dt.datetime | None = None
    reply: str | None = None


class TreeNode(BaseModel):
    label: str
    children: list[TreeNode] = []


def review_format(model: type[BaseModel] = Review) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def simulator_server() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def sim(simulator_server: SimulatorServer) -> SimulatorServer:
    """The module's simulator with default knobs and zeroed counters."""
    simulator_server.configure(**SimulatorConfig().model_dump())
    simulator_server.reset()
    return simulator_server


@pytest.fixture
def client(sim: SimulatorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)


def chat(client: openai.OpenAI, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(model="sim-small", messages=user(text), **kwargs)


# Structured output


def test_json_schema_output_is_valid_and_deterministic(client: openai.OpenAI) -> None:
    prompt = "Review: great battery life, but the screen scratches easily."
    first = chat(client, prompt, response_format=review_format())
    again = chat(client, prompt, response_format=review_format())
    other = chat(
        client, "Review: slow shipping and a cracked case.", response_format=review_format()
    )

    review = Review.model_validate_json(first.choices[0].message.content)
    Review.model_validate_json(other.choices[0].message.content)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    assert review.product.name.startswith("[sim]")
    prompt_words = {"review", "great", "battery", "life", "but", "the", "screen", "scratches"}
    assert set(" ".join(review.themes).split()) & prompt_words
    assert first.system_fingerprint == "llm-assets-simulator"
    assert first.model == "sim-small"
    assert first.choices[0].finish_reason == "stop"


def test_many_rows_all_validate(client: openai.OpenAI) -> None:
    contents = {
        chat(client, f"row {i}: review text number {i}", response_format=review_format())
        .choices[0]
        .message.content
        for i in range(25)
    }
    assert len(contents) == 25
    for content in contents:
        Review.model_validate_json(content)


def test_sdk_parse_with_strict_schema(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model="sim-large", messages=user("battery lasts two days"), response_format=Review
    )
    assert isinstance(completion.choices[0].message.parsed, Review)
    assert completion.model == "sim-large"


def test_recursive_schema_terminates() -> None:
    schema = TreeNode.model_json_schema()
    for seed in range(20):
        TreeNode.model_validate(fill_schema(schema, random.Random(seed), PhraseMaker("a b c")))


def test_plain_text_and_json_object(client: openai.OpenAI) -> None:
    plain = chat(client, "tell me about the battery").choices[0].message.content
    assert plain.startswith("[sim]") and "battery" in plain
    as_object = chat(client, "battery", response_format={"type": "json_object"})
    assert isinstance(json.loads(as_object.choices[0].message.content), dict)


# Usage and limits on length


def test_usage_is_an_honest_estimate(client: openai.OpenAI) -> None:
    short = chat(client, "short prompt", response_format=review_format())
    long_text = "a much longer prompt " * 50
    long = chat(client, long_text, response_format=review_format())
    assert short.usage.prompt_tokens == estimate_prompt_tokens(user("short prompt"))
    assert long.usage.prompt_tokens == estimate_prompt_tokens(user(long_text))
    assert long.usage.prompt_tokens > short.usage.prompt_tokens
    content = short.choices[0].message.content
    assert short.usage.completion_tokens == estimate_tokens(content)
    assert short.usage.total_tokens == short.usage.prompt_tokens + short.usage.completion_tokens
    assert estimate_tokens("great battery life") == 5


def test_max_tokens_truncates_with_length(client: openai.OpenAI) -> None:
    reply = chat(client, "battery", response_format=review_format(), max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens <= 5
    with pytest.raises(ValueError):
        json.loads(reply.choices[0].message.content)


def test_context_length_exceeded(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.configure(context_window=50)
    chat(client, "fits")
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, "too long " * 40)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert "maximum context length is 50 tokens" in caught.value.message


# Auth


def test_unknown_key_is_rejected_and_masked(sim: SimulatorServer) -> None:
    good, bad = "sk-good-key-0123456789", "sk-abcdefghijklmnopxyz"
    sim.configure(api_keys=[good])
    bad_client = openai.OpenAI(base_url=sim.base_url, api_key=bad, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(bad_client, "hello")
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "sk-ab****xyz" in caught.value.message
    assert bad not in caught.value.message and bad not in caught.value.response.text
    assert "x-ratelimit-limit-requests" not in caught.value.response.headers

    good_client = openai.OpenAI(base_url=sim.base_url, api_key=good, max_retries=0)
    assert chat(good_client, "hello").choices[0].message.content
    assert good not in json.dumps(sim.stats())


# Rate limits


def test_rpm_limit_returns_429_with_openai_headers(sim: SimulatorServer) -> None:
    sim.configure(rpm=3, window_s=1.0)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="sim-small", messages=user("hi")
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert "x-ratelimit-limit-tokens" not in raw.headers
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]

    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, "hi")
    error = caught.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    retry_after = float(error.response.headers["retry-after"])
    assert 0 < retry_after <= 1.0
    assert int(error.response.headers["retry-after-ms"]) == math.ceil(retry_after * 1000)
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.response.headers["x-ratelimit-reset-requests"].endswith("s")

    time.sleep(retry_after)
    assert chat(client, "hi").choices[0].message.content
    by_key = sim.stats()["by_key"]["****st"]
    assert by_key == {
        "admitted": 4,
        "rate_limited": 1,
        "max_requests_in_window": 3,
        "max_tokens_in_window": by_key["max_tokens_in_window"],
    }


def test_tpm_limit_counts_max_tokens_at_admission(sim: SimulatorServer) -> None:
    sim.configure(tpm=100, window_s=5.0)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=user("hi"), max_tokens=60
    )
    charged = estimate_prompt_tokens(user("hi")) + 60
    assert raw.headers["x-ratelimit-remaining-tokens"] == str(100 - charged)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, "hi", max_tokens=60)
    assert caught.value.type == "tokens"
    assert float(caught.value.response.headers["retry-after"]) > 0


def test_window_never_holds_more_than_rpm_under_concurrency(sim: SimulatorServer) -> None:
    sim.configure(rpm=10, window_s=0.3)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)

    def call_until_admitted(i: int) -> int:
        attempts = 0
        while True:
            attempts += 1
            try:
                chat(client, f"row {i}")
                return attempts
            except openai.RateLimitError as exc:
                time.sleep(float(exc.response.headers["retry-after"]))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        attempts = list(pool.map(call_until_admitted, range(40)))
    by_key = sim.stats()["by_key"]["****st"]
    assert by_key["admitted"] == 40
    assert by_key["rate_limited"] == sum(attempts) - 40 > 0
    assert by_key["max_requests_in_window"] == 10


def test_insufficient_quota(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.configure(insufficient_quota=True)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(client, "hi")
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert "retry-after" not in caught.value.response.headers


def test_format_duration_matches_openai_style() -> None:
    assert [format_duration(s) for s in (0, 0.12, 1, 7.66, 360)] == [
        "0s",
        "120ms",
        "1s",
        "7.66s",
        "6m0s",
    ]


# Faults


def test_markers(sim: SimulatorServer, client: openai.OpenAI) -> None:
    fmt = review_format()
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client, "x [[sim:500]]")
    assert caught.value.status_code == 500
    with pytest.raises(openai.InternalServerError) as caught:
        chat(client, "x [[sim:503]]")
    assert caught.value.status_code == 503
    with pytest.raises(openai.APIConnectionError):
        chat(client, "x [[sim:disconnect]]")
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, "x [[sim:context_length]]")
    assert bad.value.code == "context_length_exceeded"

    broken = chat(client, "x [[sim:invalid_json]]", response_format=fmt).choices[0]
    assert broken.finish_reason == "stop"
    with pytest.raises(ValueError):
        Review.model_validate_json(broken.message.content)
    cut = chat(client, "x [[sim:length]]", response_format=fmt).choices[0]
    assert cut.finish_reason == "length"
    filtered = chat(client, "x [[sim:content_filter]]").choices[0]
    assert filtered.finish_reason == "content_filter" and not filtered.message.content
    refused = chat(client, "x [[sim:refusal]]").choices[0].message
    assert refused.refusal and refused.content is None

    faults = sim.stats()["faults_injected"]
    assert set(faults) == {
        "500",
        "503",
        "disconnect",
        "context_length",
        "invalid_json",
        "length",
        "content_filter",
        "refusal",
    }


def test_slow_marker_makes_the_client_time_out(sim: SimulatorServer) -> None:
    sim.configure(slow_ms=1500)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        chat(client, "x [[sim:slow]]")


def test_counted_marker_fails_then_recovers(sim: SimulatorServer, client: openai.OpenAI) -> None:
    outcomes = []
    for _ in range(3):
        try:
            chat(client, "retry me [[sim:500:2]]")
            outcomes.append("ok")
        except openai.InternalServerError:
            outcomes.append("500")
    assert outcomes == ["500", "500", "ok"]


def test_unknown_marker_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="unknown simulator marker"):
        chat(client, "x [[sim:explode]]")


def test_rate_based_fault(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.configure(fault_500=1.0)
    with pytest.raises(openai.InternalServerError):
        chat(client, "hi")
    sim.configure(fault_500=0.0, fault_length=1.0)
    assert chat(client, "hi").choices[0].finish_reason == "length"
    assert sim.stats()["faults_injected"] == {"500": 1, "length": 1}


def test_latency(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.configure(latency_ms=150)
    started = time.perf_counter()
    chat(client, "hi")
    assert time.perf_counter() - started >= 0.15


# Embeddings and models


def test_embeddings(client: openai.OpenAI) -> None:
    default = client.embeddings.create(model="sim-embed", input=["great battery", "dim screen"])
    vectors = [item.embedding for item in default.data]
    assert [len(v) for v in vectors] == [256, 256]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] != vectors[1]
    assert default.usage.prompt_tokens == estimate_tokens("great battery") + estimate_tokens(
        "dim screen"
    )

    small = client.embeddings.create(
        model="sim-embed", input="great battery", dimensions=64, encoding_format="float"
    )
    again = client.embeddings.create(
        model="sim-embed", input="great battery", dimensions=64, encoding_format="float"
    )
    assert len(small.data[0].embedding) == 64
    assert small.data[0].embedding == again.data[0].embedding


def test_embeddings_base64_matches_float(sim: SimulatorServer) -> None:
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    raw = client.embeddings.with_raw_response.create(
        model="sim-embed", input="x", dimensions=4, encoding_format="base64"
    )
    encoded = json.loads(raw.http_response.text)["data"][0]["embedding"]
    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    as_float = client.embeddings.create(
        model="sim-embed", input="x", dimensions=4, encoding_format="float"
    )
    assert decoded == pytest.approx(as_float.data[0].embedding, rel=1e-6)


def test_models_are_labelled_as_simulated(client: openai.OpenAI) -> None:
    models = {model.id: model.owned_by for model in client.models.list()}
    assert {"sim-small", "sim-large"} <= set(models)
    assert set(models.values()) == {"llm-assets-simulator"}


# Stats and control plane


def test_stats_counters(sim: SimulatorServer, client: openai.OpenAI) -> None:
    first = chat(client, "same request")
    chat(client, "same request")
    with pytest.raises(openai.InternalServerError):
        chat(client, "boom [[sim:500]]")
    client.embeddings.create(model="sim-embed", input="x")

    stats = sim.stats()
    assert stats["requests_total"] == 4
    assert stats["chat_requests"] == 3
    assert stats["chat_completions"] == 2
    assert stats["embeddings"] == 1
    assert stats["status_counts"] == {"200": 3, "500": 1}
    assert stats["duplicate_requests"] == 1
    assert stats["completion_tokens"] == 2 * first.usage.completion_tokens
    assert stats["prompt_tokens"] == 2 * first.usage.prompt_tokens + estimate_tokens("x")
    assert stats["by_key"]["****st"]["admitted"] == 4
    assert stats["config"]["rpm"] == 0

    sim.reset()
    assert sim.stats()["requests_total"] == 0


@pytest.mark.timeout(60)
def test_a_request_answered_after_a_reset_counts_before_it(
    sim: SimulatorServer, client: openai.OpenAI
) -> None:
    # A request another test left waiting must not show up in the next test's counters.
    sim.configure(latency_ms=1500)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        straggler = pool.submit(chat, client, "left waiting")
        deadline = time.monotonic() + 30
        while sim.stats()["chat_requests"] == 0:
            assert time.monotonic() < deadline, "the request never reached the simulator"
            time.sleep(0.01)
        sim.reset()
        sim.configure(latency_ms=0)
        chat(client, "after the reset")
        assert straggler.result(timeout=30).choices[0].message.content
    stats = sim.stats()
    assert stats["chat_completions"] == 1 and stats["requests_total"] == 1
    assert stats["status_counts"] == {"200": 1}

def test_configure_validates_knobs(sim: SimulatorServer) -> None:
    assert sim.configure(latency_ms=5)["latency_ms"] == 5
    with pytest.raises(ValueError, match="rpm"):
        sim.configure(rpm=-1)
    with pytest.raises(ValueError, match="no_such_knob"):
        sim.configure(no_such_knob=1)


def test_cli_flags_cover_every_knob() -> None:
    flags = ["--rpm", "600", "--window-s", "6", "--fault-503", "0.1", "--insufficient-quota"]
    repeated = ["--api-key", "k1", "--api-key", "k2", "--model-context-window", "sim-small=1000"]
    args = build_parser().parse_args([*flags, *repeated])
    config = config_from_args(args)
    assert (config.rpm, config.window_s, config.fault_503) == (600, 6.0, 0.1)
    assert config.insufficient_quota and config.api_keys == ["k1", "k2"]
    assert config.context_window_for("sim-small") == 1000


def test_public_names() -> None:
    public = {
        name
        for name, value in vars(simulator_package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert simulator_package.__all__ == sorted(public)


def test_simulator_process_answers() -> None:
    config = SimulatorConfig(api_keys=["sk-process-key-0001"], rpm=100)
    with SimulatorProcess(config) as process:
        client = openai.OpenAI(
            base_url=process.base_url, api_key="sk-process-key-0001", max_retries=0
        )
        reply = chat(client, "hello from another process", response_format=review_format())
        Review.model_validate_json(reply.choices[0].message.content)
        assert process.configure(latency_ms=1)["latency_ms"] == 1
        assert process.stats()["chat_completions"] == 1
