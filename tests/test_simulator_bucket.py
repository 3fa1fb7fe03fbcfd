"""The simulator's bucket mode over real HTTP: OpenAI's way of enforcing a per-minute limit.

Requests and tokens are continuous buckets refilled at limit / window_s per second that hold
``burst_s`` of refill. The limits here are per 60 s as at OpenAI, with a bucket of one second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from llm_assets.resources.ratelimit import parse_duration
from llm_assets.simulator import SimulatorConfig, SimulatorServer, estimate_prompt_tokens
from llm_assets.simulator.__main__ import build_parser, config_from_args
from llm_assets.simulator.limits import BucketLimiter


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(limit_mode="bucket")) as server:
        yield server


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_a_one_second_burst_then_429_with_retry_after_and_openai_headers(
    sim: SimulatorServer,
) -> None:
    # 600 per minute refills 10 a second; the bucket holds 10.
    sim.configure(rpm=600, tpm=0, window_s=60.0, burst_s=1.0)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-bucket-burst", max_retries=0)
    admitted, rejected = [], None
    for _ in range(30):
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="sim-small", messages=user("hi")
            )
            admitted.append(raw.headers)
        except openai.RateLimitError as exc:
            rejected = exc
            break
    # At most the burst plus what refilled while the calls ran (a loaded machine is slow).
    assert rejected is not None and 10 <= len(admitted) < 30
    first = admitted[0]
    assert first["x-ratelimit-limit-requests"] == "600"
    assert first["x-ratelimit-remaining-requests"] == "9"
    # Reset = time until the bucket is full again: one request's refill, 100 ms.
    reset = parse_duration(first["x-ratelimit-reset-requests"])
    assert reset is not None and 0.05 <= reset <= 0.1
    assert first["x-ratelimit-reset-requests"].endswith("ms")
    headers = rejected.response.headers
    assert rejected.code == "rate_limit_exceeded" and rejected.type == "requests"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    retry_after = float(headers["retry-after"])
    assert 0 < retry_after <= 0.1  # less than one request's refill
    time.sleep(retry_after)
    assert client.chat.completions.create(model="sim-small", messages=user("hi")).choices


def test_tokens_are_charged_at_admission_and_refill(sim: SimulatorServer) -> None:
    sim.configure(rpm=0, tpm=6000, window_s=60.0, burst_s=1.0)  # 100 tokens a second
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-bucket-tokens", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=user("hi"), max_tokens=60
    )
    charged = estimate_prompt_tokens(user("hi")) + 60
    remaining = int(raw.headers["x-ratelimit-remaining-tokens"])
    assert 100 - charged <= remaining <= 100 - charged + 5  # + refill during the call
    assert "x-ratelimit-limit-requests" not in raw.headers
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim-small", messages=user("hi"), max_tokens=60)
    assert caught.value.type == "tokens"
    assert float(caught.value.response.headers["retry-after"]) > 0
    by_key = sim.stats()["by_key"]["sk-bu****ens"]
    assert by_key["admitted"] == 1 and by_key["rate_limited"] == 1


def test_the_bucket_holds_the_rate_over_time() -> None:
    # The logic itself, on explicit times: over 60 s at most the burst plus the refill goes.
    limiter = BucketLimiter()
    limits = {"rpm": 600, "tpm": 0, "window_s": 60.0, "burst_s": 1.0}
    admitted = sum(limiter.admit("k", 0, step * 0.01, **limits).admitted for step in range(6000))
    assert admitted == 10 + 600 - 1  # a full bucket, then one per 0.1 s up to t = 59.99
    # A request larger than the whole bucket goes from a full bucket and leaves a debt.
    tokens = BucketLimiter()
    big = {"rpm": 0, "tpm": 6000, "window_s": 60.0, "burst_s": 1.0}
    assert tokens.admit("k", 500, 0.0, **big).admitted
    decision = tokens.admit("k", 10, 1.0, **big)
    assert not decision.admitted and decision.retry_after_s == pytest.approx(3.1)
    assert decision.headers["x-ratelimit-reset-tokens"] == "4s"  # until full: 400 tokens


def test_limit_mode_is_a_command_line_knob() -> None:
    args = build_parser().parse_args(["--limit-mode", "bucket", "--rpm", "600", "--burst-s", "2"])
    config = config_from_args(args)
    assert (config.limit_mode, config.rpm, config.burst_s) == ("bucket", 600, 2.0)
    with pytest.raises(ValueError, match="limit_mode"):
        SimulatorConfig(limit_mode="fixed")
