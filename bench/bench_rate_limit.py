"""Throughput at a provider's rate limit, in the simulator's three limit modes.

**Bucket mode** first (``bench/rate_limit_bucket.py``): the provider's own limiter, refilled
every second; then **combined mode** (``bench/rate_limit_combined.py``): that bucket and a
whole-minute window at once, as OpenAI enforces a per-minute limit. Every figure of both is
min / median / max of ``LLM_ASSETS_BENCH_REPEATS`` (3) runs.

**Window mode** last (below): our engine beside naive clients. Every client runs against
the same ``SimulatorProcess`` (a separate process, so the server does not share a GIL with the
client) with a per-key RPM/TPM limit over a short sliding window and lognormal latency, for
``WINDOWS`` windows each. Throughput is counted over the steady state: whole windows 2 to
``WINDOWS - 1`` of each run. The first window is left out because a burst into an empty window
would flatter a client that then stalls; the last one because runs stop sending at its end.
Fractions are successful requests (or tokens) per window over the limit.
429 rates are over the whole run: 429 answers / all answers the simulator gave.

Our engine is never told the limit: it learns it from the simulator's headers. It is told the
window length (``rate_limit_window_s``), as a user configures the provider's (60 s at OpenAI),
and that the server counts a window (``rate_limit_model="window"``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import openai

from bench import rate_limit_bucket, rate_limit_combined
from bench.curator_compare import CuratorInstall, run_curator
from bench.rate_limit_bucket import MAX_TOKENS, make_requests
from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource
from llm_assets.simulator import SimulatorConfig, SimulatorProcess

WINDOW_S = 5.0
RPM = 600  # requests per window: 120 requests/s
TPM = 60_000  # tokens per window; requests cost ~60 tokens, so RPM binds in the RPM runs
TPM_BINDING = 36_000  # for the token run: ~600 requests' worth, with room for 3x the requests
WINDOWS = 6
LATENCY_MS = 200.0
JITTER = 0.5
OUR_CONCURRENCY = 128
NAIVE_CONCURRENCY = 64


def charged_tokens(request: ChatRequest) -> int:
    """Tokens the simulator charges at admission: prompt estimate + max_tokens."""
    return request.est_prompt_tokens + request.max_output_tokens


def steady_per_window(events: list[tuple[float, float]], started: float) -> float:
    """Mean of the weights of ``(time, weight)`` events per steady-state window."""
    low, high = started + WINDOW_S, started + (WINDOWS - 1) * WINDOW_S
    return sum(w for t, w in events if low <= t < high) / (WINDOWS - 2)


def rate_429(sim: SimulatorProcess) -> float:
    counts = sim.stats()["status_counts"]
    total = sum(counts.values())
    return counts.get("429", 0) / total if total else 0.0


def run_ours(
    sim: SimulatorProcess, api_key: str, tag: str
) -> tuple[list[tuple[float, ChatRequest]], float]:
    """Our engine through ``LLMResource.run_requests``; returns (events, start time)."""
    llm = LLMResource(
        base_url=sim.base_url,
        api_key=api_key,
        model="sim-small",
        max_concurrency=OUR_CONCURRENCY,
        rate_limit_window_s=WINDOW_S,
        rate_limit_model="window",
    )
    requests = make_requests(RPM * WINDOWS * 2, tag)
    by_key = {r.key: r for r in requests}
    events: list[tuple[float, ChatRequest]] = []

    def on_result(result: ChatResult) -> None:
        if result.ok:
            events.append((time.monotonic(), by_key[result.key]))

    started = time.monotonic()
    deadline = started + WINDOWS * WINDOW_S
    llm.run_requests(requests, on_result, should_stop=lambda: time.monotonic() >= deadline)
    return events, started


def run_naive_sequential(sim: SimulatorProcess, api_key: str) -> float:
    client = openai.OpenAI(base_url=sim.base_url, api_key=api_key)
    requests = iter(make_requests(RPM * WINDOWS, "seq"))
    events = []
    started = time.monotonic()
    while time.monotonic() < started + WINDOWS * WINDOW_S:
        try:
            client.chat.completions.create(**next(requests).body)
        except openai.APIError:
            continue
        events.append((time.monotonic(), 1.0))
    client.close()
    return steady_per_window(events, started) / RPM


async def _naive_gather(sim: SimulatorProcess, api_key: str) -> float:
    client = openai.AsyncOpenAI(base_url=sim.base_url, api_key=api_key)  # SDK default retries
    requests = iter(make_requests(RPM * WINDOWS * 2, "gather"))
    events: list[tuple[float, float]] = []
    started = time.monotonic()

    async def worker() -> None:
        for request in requests:
            if time.monotonic() >= started + WINDOWS * WINDOW_S:
                return
            try:
                await client.chat.completions.create(**request.body)
            except openai.APIError:
                continue
            events.append((time.monotonic(), 1.0))

    await asyncio.gather(*(worker() for _ in range(NAIVE_CONCURRENCY)))
    await client.close()
    return steady_per_window(events, started) / RPM


def _scenario(
    sim: SimulatorProcess, knobs: dict[str, Any], body: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    sim.configure(**knobs)
    sim.reset()
    return body()


def run() -> dict[str, float | str]:
    """The bucket- and combined-mode cases, then every client against a window-mode simulator."""
    return rate_limit_bucket.run() | rate_limit_combined.run() | run_window()


def run_window() -> dict[str, float | str]:
    """Runs every client against one window-mode simulator and returns the figures."""
    limits = {"rpm": RPM, "tpm": TPM, "window_s": WINDOW_S}
    faults_off = {"fault_500": 0.0, "fault_503": 0.0}
    config = SimulatorConfig(latency_ms=LATENCY_MS, latency_jitter=JITTER, seed=7, **limits)
    figures: dict[str, float | str] = {}
    with SimulatorProcess(config) as sim:

        def ours() -> dict[str, float]:
            events, started = run_ours(sim, "sk-bench-ours", "ours")
            per_window = steady_per_window([(t, 1.0) for t, _ in events], started)
            return {
                "ours_throughput_fraction_of_limit": per_window / RPM,
                "ours_429_rate": rate_429(sim),
            }

        def ours_tpm() -> dict[str, float]:
            events, started = run_ours(sim, "sk-bench-tpm", "tpm")
            tokens = [(t, float(charged_tokens(r))) for t, r in events]
            return {
                "ours_tpm_throughput_fraction_of_limit": steady_per_window(tokens, started)
                / TPM_BINDING,
                "ours_tpm_429_rate": rate_429(sim),
            }

        def faults() -> dict[str, float]:
            events, started = run_ours(sim, "sk-bench-faults", "faults")
            per_window = steady_per_window([(t, 1.0) for t, _ in events], started)
            return {"ours_faults_completed_fraction_of_limit": per_window / RPM}

        def sequential() -> dict[str, float]:
            return {"naive_sequential_fraction_of_limit": run_naive_sequential(sim, "sk-seq")}

        def gather() -> dict[str, float]:
            fraction = asyncio.run(_naive_gather(sim, "sk-gather"))
            return {
                "naive_gather_fraction_of_limit": fraction,
                "naive_gather_429_rate": rate_429(sim),
            }

        figures |= _scenario(sim, {**limits, **faults_off}, ours)
        tpm_limits = {**limits, "rpm": RPM * 3, "tpm": TPM_BINDING}
        figures |= _scenario(sim, {**tpm_limits, **faults_off}, ours_tpm)
        figures |= _scenario(sim, {**limits, "fault_500": 0.1, "fault_503": 0.1}, faults)
        # Installing curator (first run only) takes CPU; it overlaps only the naive clients,
        # whose figures are bound by latency or by the server, not by this machine.
        curator_install = CuratorInstall()
        figures |= _scenario(sim, {**limits, **faults_off}, sequential)
        figures |= _scenario(sim, {**limits, **faults_off}, gather)
        figures |= _scenario(
            sim,
            {**limits, **faults_off},
            lambda: run_curator(
                curator_install,
                sim,
                rpm=RPM,
                tpm=TPM,
                window_s=WINDOW_S,
                windows=WINDOWS,
                max_tokens=MAX_TOKENS,
            ),
        )
    return figures
