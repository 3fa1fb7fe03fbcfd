"""Per-row orchestration overhead: our engine against a bare HTTP client, at zero latency.

Both send the same ``ROWS`` chat requests with the same concurrency to a ``SimulatorProcess``
without latency or limits. The baseline is a bare ``httpx2.AsyncClient`` (the HTTP library
under the ``openai`` SDK) posting the JSON bodies; ours is ``LLMResource.run_requests``: the
SDK, the retry layer, the rate limiter (which finds no limit headers and stops pacing after
its first request) and result accounting. ``overhead_ms_per_row`` is the difference in wall
time per row. The best of ``REPEATS`` runs is kept for each, so a hiccup of this shared
2-core machine does not decide the figure.
"""

from __future__ import annotations

import asyncio
import time

import httpx2

from bench.bench_rate_limit import make_requests
from llm_assets.resources.llm import ChatRequest, LLMResource
from llm_assets.simulator import SimulatorConfig, SimulatorProcess

ROWS = 5_000
CONCURRENCY = 64
REPEATS = 3


async def _bare_http(base_url: str, requests: list[ChatRequest]) -> None:
    queue = iter(requests)
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"authorization": "Bearer sk-bench-overhead"}
    async with httpx2.AsyncClient(base_url=base_url, limits=limits, headers=headers) as client:

        async def worker() -> None:
            for request in queue:
                response = await client.post("/chat/completions", json=request.body)
                response.raise_for_status()
                response.json()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _ours(base_url: str, requests: list[ChatRequest]) -> None:
    llm = LLMResource(base_url=base_url, api_key="sk-bench-overhead", max_concurrency=CONCURRENCY)
    stats = llm.run_requests(requests, lambda result: None)
    if stats.ok != len(requests):
        raise RuntimeError(f"only {stats.ok} of {len(requests)} requests succeeded: {stats}")


def _best_wall_time(body: object) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        body()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def run() -> dict[str, float]:
    """Wall time per row of ours and of the bare client, and their difference."""
    with SimulatorProcess(SimulatorConfig()) as sim:
        # Distinct bodies per repeat would only matter to a cache; neither side has one.
        requests = make_requests(ROWS, "overhead")
        _ours(sim.base_url, requests[:200])  # warm imports and connections on both sides
        bare_s = _best_wall_time(lambda: asyncio.run(_bare_http(sim.base_url, requests)))
        ours_s = _best_wall_time(lambda: _ours(sim.base_url, requests))
    return {
        "overhead_ms_per_row": (ours_s - bare_s) / ROWS * 1000,
        "ours_ms_per_row_at_zero_latency": ours_s / ROWS * 1000,
        "bare_http_ms_per_row_at_zero_latency": bare_s / ROWS * 1000,
    }
