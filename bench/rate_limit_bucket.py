"""At the provider's limit on the provider's own limiter: the simulator's bucket mode.

The simulator enforces 600 requests (and 60k tokens) per minute the way OpenAI does: as
continuous buckets refilled at limit/60 per second holding one second of burst, answering
``x-ratelimit-*`` headers and 429 + ``retry-after``. Latency is lognormal, mean 0.3 s.
Our engine runs with the resource's defaults: it is **not told the limit** and learns it
from the headers.

A figure's fraction of the limit is the step's throughput over the limit: rows answered ok /
(limit per second x seconds from the step's start to its last answer). The step's start is
when the engine starts sending (the first process's, with two processes; the client is opened
before, as ``setup_for_execution`` opens it before a Dagster step), so the wait for the first
answer, the pacing and the slowest last answer all count. 429 rates are
429 answers / all answers the simulator gave the key.

Cases (each run ``REPEATS`` times; every figure is reported as min / median / max):

- one step of 600 rows;
- two processes x 600 rows on one key, sharing the limit through a SQLite store;
- one step of 300 rows with 20% of attempts answered HTTP 500: every 5th admission
  (``fault_draws="even"``), so the ceiling is 0.8 in every run rather than a draw of the dice
  (random draws put it anywhere in 0.76-0.84 for 300 rows). Failures are admitted, so each one
  spends a unit of the limit; ``faults_ceiling_fraction_of_limit`` is 300 / attempts. Every
  row must end ok or failed with a reason (``faults_rows_without_outcome`` counts the others).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from llm_assets.resources.llm import ChatRequest, ChatResult, LLMResource, estimate_prompt_tokens
from llm_assets.simulator import SimulatorConfig, SimulatorProcess
from llm_assets.simulator.errors import mask_key

RPM = 600
TPM = 60_000
LATENCY_MS = 300.0
JITTER = 0.5
MAX_TOKENS = 50
ROWS = 600
FAULT_ROWS = 300
FAULT_500 = 0.2
CONCURRENCY = 32
REPEATS = int(os.environ.get("LLM_ASSETS_BENCH_REPEATS", "3"))
CHILD_TIMEOUT_S = 600.0


def make_requests(count: int, tag: str) -> list[ChatRequest]:
    """``count`` distinct chat requests of a few dozen tokens each."""
    requests = []
    for i in range(count):
        text = f"{tag} review {i}: " + "battery life is great but the screen " * (1 + i % 4)
        messages = [{"role": "user", "content": text}]
        body = {"model": "sim-small", "messages": messages, "max_tokens": MAX_TOKENS}
        requests.append(ChatRequest(f"{tag}-{i}", body, estimate_prompt_tokens(messages)))
    return requests


def _llm(base_url: str, api_key: str, **overrides: Any) -> LLMResource:
    return LLMResource(
        base_url=base_url,
        api_key=api_key,
        model="sim-small",
        max_concurrency=CONCURRENCY,
        **overrides,
    )


def _step(llm: LLMResource, requests: list[ChatRequest]) -> dict[str, Any]:
    """Runs one step; returns its start and last answer (``time.monotonic``) and outcomes.

    ``time.monotonic`` is one clock for every process of the host (Linux CLOCK_MONOTONIC).
    """
    results: list[ChatResult] = []
    last = [0.0]

    def on_result(result: ChatResult) -> None:
        results.append(result)
        last[0] = time.monotonic()

    stats = llm.run_requests(requests, on_result)
    return {
        "started": stats.started_at,
        "last": last[0],
        "ok": sum(r.ok for r in results),
        "reported": len(results),
        "unexplained": sum(1 for r in results if not r.ok and not r.error),
        "attempts": sum(r.attempts for r in results),
    }


_KEY_NUMBERS = itertools.count()


def new_api_key(tag: str) -> str:
    """A key of its own for each case: the simulator counts per masked key (``sk-bu****NNN``).

    The mask keeps the last three characters, so they are a counter: keys ending in a shared
    run id would merge the 429 counts of every case of that run.
    """
    return f"sk-bucket-{tag}-{next(_KEY_NUMBERS) % 1000:03d}"


def _rate_429(sim: SimulatorProcess, api_key: str) -> float:
    entry = sim.stats()["by_key"].get(mask_key(api_key), {})
    answered = entry.get("admitted", 0) + entry.get("rate_limited", 0)
    return entry.get("rate_limited", 0) / answered if answered else 0.0


def _fraction(ok: int, started: float, last: float) -> float:
    return ok / (RPM / 60.0 * (last - started))


def one_step(sim: SimulatorProcess, tag: str) -> tuple[float, float]:
    """(fraction of the limit, 429 rate) of one step of ``ROWS`` rows."""
    api_key = new_api_key(tag)
    step = _step(_llm(sim.base_url, api_key), make_requests(ROWS, tag))
    return _fraction(step["ok"], step["started"], step["last"]), _rate_429(sim, api_key)


def _child(
    base_url: str, api_key: str, store: dict[str, str], tag: str, barrier: Any, out: Any
) -> None:
    llm = _llm(base_url, api_key, **store)
    requests = make_requests(ROWS, tag)
    barrier.wait(timeout=CHILD_TIMEOUT_S)  # both processes imported everything: start together
    out.put(_step(llm, requests))


def two_processes(
    sim: SimulatorProcess, tag: str, store: dict[str, str] | None = None
) -> tuple[float, float]:
    """(fraction of the limit, 429 rate) of two processes x ``ROWS`` rows on one key.

    They share the limit through ``store`` (``LLMResource`` fields), by default a SQLite file.
    """
    api_key = new_api_key(tag)
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(2), context.Queue()
    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "rate_limits.sqlite")
        store = store or {"rate_limit_store": "sqlite", "rate_limit_sqlite_path": path}
        children = [
            context.Process(
                target=_child, args=(sim.base_url, api_key, store, f"{tag}-p{i}", barrier, out)
            )
            for i in range(2)
        ]
        for child in children:
            child.start()
        try:
            steps = [out.get(timeout=CHILD_TIMEOUT_S) for _ in children]
        finally:
            for child in children:
                child.join(30)
                if child.is_alive():
                    child.kill()
    ok = sum(step["ok"] for step in steps)
    started = min(step["started"] for step in steps)
    last = max(step["last"] for step in steps)
    return _fraction(ok, started, last), _rate_429(sim, api_key)


def faults(sim: SimulatorProcess, tag: str) -> tuple[float, float, int]:
    """(fraction of the limit, ceiling 300/attempts, rows not ok-or-failed-with-a-reason)."""
    api_key = new_api_key(tag)
    step = _step(_llm(sim.base_url, api_key), make_requests(FAULT_ROWS, tag))
    lost = FAULT_ROWS - step["reported"] + step["unexplained"]
    ceiling = FAULT_ROWS / step["attempts"]
    return _fraction(step["ok"], step["started"], step["last"]), ceiling, lost


def spread(values: list[float]) -> str:
    """``min / median / max`` of ``values``."""
    return " / ".join(f"{v:.4g}" for v in (min(values), statistics.median(values), max(values)))


def limit_config(mode: str) -> SimulatorConfig:
    """The simulator of the per-minute limit cases: ``RPM``/``TPM`` per 60 s in ``mode``."""
    return SimulatorConfig(
        limit_mode=mode,
        rpm=RPM,
        tpm=TPM,
        window_s=60.0,
        burst_s=1.0,
        latency_ms=LATENCY_MS,
        latency_jitter=JITTER,
        seed=7,
    )


class Series(dict[str, list[float]]):
    """Figures of repeated runs, by name."""

    def note(self, name: str, value: float) -> None:
        """Adds one run's ``value`` of ``name``."""
        self.setdefault(name, []).append(value)


def run() -> dict[str, float | str]:
    """Every bucket-mode case ``REPEATS`` times; figures as ``min / median / max``."""
    config = limit_config("bucket")
    series = Series()
    note = series.note

    with SimulatorProcess(config) as sim:
        for _ in range(REPEATS):
            run_id = uuid.uuid4().hex[:8]
            sim.configure(fault_500=0.0)
            fraction, rate = one_step(sim, f"one-{run_id}")
            note("throughput_fraction_of_limit_bucket", fraction)
            note("throughput_429_rate_bucket", rate)
            fraction, rate = two_processes(sim, f"two-{run_id}")
            note("two_process_fraction_of_limit_bucket", fraction)
            note("two_process_429_rate_bucket", rate)
            sim.reset()  # the count of admissions that spaces the faults starts again
            sim.configure(fault_500=FAULT_500, fault_draws="even")
            fraction, ceiling, lost = faults(sim, f"faults-{run_id}")
            note("faults_completed_fraction_of_limit", fraction)
            note("faults_ceiling_fraction_of_limit", ceiling)
            note("faults_rows_without_outcome", float(lost))
    figures: dict[str, float | str] = {"bucket_runs": float(REPEATS)}
    figures |= {name: spread(values) for name, values in series.items()}
    return figures
