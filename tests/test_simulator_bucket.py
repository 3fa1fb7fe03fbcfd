"""The simulator's bucket and combined modes: how OpenAI enforces a per-minute limit.

Bucket mode: requests and tokens are continuous buckets refilled at limit / window_s per second
that hold ``burst_s`` of refill. Combined mode: those buckets and a sliding window of
``window_s`` at once, so a per-minute limit holds per second *and* over the whole minute. The
limits here are per 60 s as at OpenAI, with a bucket of one second, unless a test needs a
window short enough to fill over HTTP; the rest runs the limit logic on explicit times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llm_assets.resources.ratelimit import parse_duration
from llm_assets.simulator import SimulatorConfig, SimulatorServer, estimate_prompt_tokens
from llm_assets.simulator.__main__ import build_parser, config_from_args
from llm_assets.simulator.limits import BucketLimiter, CombinedLimiter


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


# Combined mode: the bucket and the whole window at once

PER_MINUTE: dict[str, Any] = {"rpm": 480, "tpm": 0, "window_s": 60.0, "burst_s": 1.0}
"""8 requests a second, 8 in the bucket: times in 1/64 s are exact in binary."""


def most_in(times: list[float], span_s: float) -> int:
    """The most events in any half-open interval ``(t - span_s, t]``, as the window counts."""
    first = most = 0
    for last, when in enumerate(times):
        while times[first] <= when - span_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_combined_mode_over_http_the_full_window_binds_with_its_own_headers(
    sim: SimulatorServer,
) -> None:
    # 4 per 4 s refills one a second and the bucket holds 10: the window binds first. In
    # bucket mode the fifth request would go.
    sim.configure(limit_mode="combined", rpm=4, tpm=0, window_s=4.0, burst_s=10.0)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-combined-http", max_retries=0)
    try:
        started = time.monotonic()
        admitted = [
            client.chat.completions.with_raw_response.create(
                model="sim-small", messages=user("hi")
            ).headers
            for _ in range(4)
        ]
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="sim-small", messages=user("hi"))
        elapsed = time.monotonic() - started
    finally:
        sim.configure(limit_mode="bucket")
    assert elapsed < 3.5, "the machine is too slow for this test's window"
    # The window has fewer units left than the bucket, so it decides remaining and reset.
    assert [h["x-ratelimit-remaining-requests"] for h in admitted] == ["3", "2", "1", "0"]
    assert admitted[0]["x-ratelimit-reset-requests"] == "0s"  # room for one more now
    last_reset = parse_duration(admitted[-1]["x-ratelimit-reset-requests"])
    assert last_reset is not None and 4.0 - elapsed - 0.1 <= last_reset <= 4.0
    rejected = caught.value
    assert rejected.code == "rate_limit_exceeded" and rejected.type == "requests"
    headers = rejected.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    # Until the first admission leaves the window, not one refill of the bucket (1 s).
    retry_after = float(headers["retry-after"])
    assert 4.0 - elapsed - 0.1 <= retry_after <= 4.0 and retry_after > 0.4
    assert int(headers["retry-after-ms"]) == math.ceil(retry_after * 1000)
    by_key = sim.stats()["by_key"]["sk-co****ttp"]
    assert by_key["admitted"] == 4 and by_key["rate_limited"] == 1


def test_combined_limits_hold_the_second_and_the_minute_and_retry_after_is_exact() -> None:
    # A client that sends as soon as it may and, when rejected, tries again exactly when
    # retry-after says (rounded up to a millisecond, as the server sends it).
    limiter = CombinedLimiter()
    admitted: list[float] = []
    now, told_to_wait = 0.0, False
    while now < 150.0:
        decision = limiter.admit("k", 0, now, **PER_MINUTE)
        if decision.admitted:
            admitted.append(now)
            told_to_wait = False
            continue
        assert not told_to_wait, f"rejected again at {now} after waiting as told"
        assert decision.retry_after_s is not None and decision.retry_after_s > 0
        now += math.ceil(decision.retry_after_s * 1000) / 1000
        told_to_wait = True
    assert most_in(admitted, 60.0) == 480  # the window is used to the full, never more
    assert most_in(admitted, 1.0) <= 8 + 8 + 1  # a bucket's burst plus a second's refill
    # A burst, then the refill rate until the window is full at 59 s; the burst leaves the
    # window at 60 s and the bucket, full again by then, sends it once more.
    assert admitted[:8] == [0.0] * 8
    assert admitted[479] == pytest.approx(59.0)
    assert admitted[480] == pytest.approx(60.0)


def test_combined_headers_describe_the_limit_with_less_room() -> None:
    limiter = CombinedLimiter()
    for _ in range(3):
        early = limiter.admit("k", 0, 0.0, **PER_MINUTE)
    # The bucket binds: 5 of 8 left (the window has 477); full again after 3/8 s.
    assert early.headers["x-ratelimit-remaining-requests"] == "5"
    assert early.headers["x-ratelimit-reset-requests"] == "375ms"
    # Tokens: a request over the whole per-minute limit never fits the window.
    tokens = CombinedLimiter()
    limits: dict[str, Any] = {"rpm": 0, "tpm": 6000, "window_s": 60.0, "burst_s": 1.0}
    too_big = tokens.admit("k", 6001, 0.0, **limits)
    assert (too_big.admitted, too_big.limited_by, too_big.retry_after_s) == (False, "tokens", None)
    # One that fits the window but not the bucket (100 a second) goes from a full bucket and
    # leaves a debt the refill pays back, as in bucket mode.
    assert tokens.admit("k", 500, 0.0, **limits).admitted
    later = tokens.admit("k", 10, 1.0, **limits)
    assert not later.admitted and later.retry_after_s == pytest.approx(3.1)
    assert later.headers["x-ratelimit-remaining-tokens"] == "0"
    assert later.headers["x-ratelimit-reset-tokens"] == "4s"  # the bucket: until full again
    # Peeking changes nothing.
    assert tokens.peek("k", 1.0, **limits).headers == later.headers


def test_combined_is_a_limit_mode_of_the_config_and_the_command_line() -> None:
    args = build_parser().parse_args(["--limit-mode", "combined", "--rpm", "600"])
    assert config_from_args(args).limit_mode == "combined"
