"""The pipeline on dagster-celery workers: the shared limit, the speed-up, the cost per step.

Everything is real: Redis (``tools/redis.sh`` starts it when down), a Postgres instance built
from the repository's ``dagster.yaml`` in a fresh database, worker subprocesses started with
``dagster-celery worker start -A dagster_celery.app -y celery.yaml`` (one process each), runs
started with ``dagster job execute`` on ``bench/celery_jobs.py``, a ``SimulatorProcess``.

- ``celery_2_workers_fraction_of_limit``: one run, two LLM steps of ``ROWS`` rows on two
  workers, one API key limited to ``RPM`` requests per minute (the simulator's bucket mode, as
  OpenAI enforces it; latency lognormal, mean 0.3 s). The steps share the limit through the
  Postgres rate-limit store and are not told it. Fraction = answers / (limit per second x
  seconds from the simulator's first request to its last answer), so start-up skew between
  the two steps counts against it. ``celery_2_workers_429_rate``: 429s / all answers.
- ``celery_speedup_2_workers_vs_1``: the same run (``SPEEDUP_ROWS`` rows per step) with no
  limit and 2 s latency, on two workers and then on one; seconds from first request to last
  answer, one over two. These
  run first: the limiter keeps a key's learned limit in Postgres, and would pace them by it.
  ``..._workers_used_by_llm_steps`` says how many workers the two LLM steps ran on.
- ``celery_step_overhead_s`` / ``multiprocess_step_overhead_s``: a chain of steps that do
  nothing; mean seconds from one step's success to the next one's.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from llm_assets.simulator import SimulatorConfig, SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
RPM = 1200
ROWS = 900
LATENCY_MS = 300.0
# The speed-up runs wait on the endpoint, not the CPU: the benchmark machine has 2 cores.
SPEEDUP_ROWS = 256
SPEEDUP_LATENCY_MS = 2000.0
CONCURRENCY = 16
LLM_STEPS = {"answers_a", "answers_b"}
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


class Bench:
    """A Postgres instance, Celery workers on a Redis database of their own, a simulator."""

    def __init__(self, tmp: Path, pg_url: str, sim: SimulatorProcess, broker: str) -> None:
        self.tmp = tmp
        self.sim = sim
        (tmp / "home").mkdir()
        (tmp / "home" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_HOME": str(tmp / "home"),
            "DAGSTER_PG_URL": pg_url,
            "LLM_ASSETS_OFFLINE": "1",
            "LLM_ASSETS_BASE_URL": sim.base_url,
            "LLM_ASSETS_DATA_DIR": str(tmp / "data"),
            "LLM_ASSETS_CONCURRENCY": str(CONCURRENCY),
            "LLM_ASSETS_CELERY_BROKER": broker,
            "LLM_ASSETS_CELERY_BACKEND": broker,
            "DAGSTER_TELEMETRY_DISABLED": "1",
        }
        os.environ["DAGSTER_PG_URL"] = pg_url
        self.instance = dg.DagsterInstance.from_config(str(tmp / "home"))
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def start_worker(self, name: str) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115
        self.workers[f"{name}@{socket.gethostname()}"] = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(ROOT / "celery.yaml"), "-n", name, "--", "-c", "1", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_for_workers(self) -> None:
        from celery import Celery

        app = Celery(broker=self.env["LLM_ASSETS_CELERY_BROKER"])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=1.0)
            if set(self.workers) <= {name for reply in replies for name in reply}:
                app.close()
                return
            time.sleep(1)
        raise RuntimeError(f"Celery workers did not start; see the logs in {self.tmp}")

    def stop_worker(self, hostname: str) -> None:
        proc = self.workers.pop(hostname)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)

    def execute(self, job: str, run_config: str = "{}") -> str:
        """Runs ``job`` with ``dagster job execute``; returns its run id."""
        config = self.tmp / f"{uuid.uuid4().hex}.yaml"
        config.write_text(run_config)
        before = {r.run_id for r in self.instance.get_runs()}
        proc = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-f", str(ROOT / "bench" / "celery_jobs.py"),
             "-j", job, "-c", str(config)],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{job} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        (run_id,) = {r.run_id for r in self.instance.get_runs()} - before
        return run_id

    def timed_llm_run(self, salt: str, rows: int = ROWS) -> tuple[float, int, int]:
        """Seconds from the simulator's first request to its last answer, the answers, and
        how many workers ran the two LLM steps."""
        self.sim.reset()
        samples: list[tuple[float, int, int]] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                stats = self.sim.stats()
                now = time.monotonic()
                samples.append((now, stats["chat_requests"], stats["chat_completions"]))
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        items = f"{{config: {{salt: {salt}, rows: {rows}}}}}"
        try:
            run_id = self.execute("two_llm_steps", f"ops: {{items_a: {items}, items_b: {items}}}")
        finally:
            done.set()
            poller.join()
        answered = samples[-1][2]
        first = next(t for t, requests, _ in samples if requests > 0)
        last = next(t for t, _, completions in samples if completions == answered)
        workers = set()
        for record in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            data = event.engine_event_data if event is not None else None
            if data is not None and event is not None and event.step_key in LLM_STEPS:
                worker = data.metadata.get("Celery worker")
                if worker is not None:
                    workers.add(str(worker.value))
        return last - first, answered, len(workers)

    def step_overhead(self, job: str) -> float:
        run_id = self.execute(job)
        done = sorted(
            record.timestamp
            for record in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        )
        gaps = [b - a for a, b in itertools.pairwise(done)]
        return sum(gaps) / len(gaps)

    def close(self) -> None:
        for hostname in list(self.workers):
            self.stop_worker(hostname)
        self.instance.dispose()


@contextmanager
def _postgres_database() -> Iterator[str]:
    import psycopg2

    admin = psycopg2.connect(PG_ADMIN)
    admin.autocommit = True
    name = f"llm_assets_bench_celery_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run() -> dict[str, Any]:
    """Starts Redis if needed, two workers, and measures; one figure per key."""
    subprocess.run([str(ROOT / "tools" / "redis.sh")], check=True, timeout=60)
    import redis

    broker = f"redis://127.0.0.1:6379/{14}"
    redis.Redis.from_url(broker).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="bench-celery-"))
    config = SimulatorConfig(latency_ms=LATENCY_MS, latency_jitter=0.5, seed=7)
    figures: dict[str, Any] = {}
    with _postgres_database() as pg_url, SimulatorProcess(config) as sim:
        bench = Bench(tmp, pg_url, sim, broker)
        try:
            bench.start_worker("bench-w1")
            bench.start_worker("bench-w2")
            bench.wait_for_workers()
            # Unlimited first: the limiter remembers a key's learned limit in Postgres.
            sim.configure(latency_ms=SPEEDUP_LATENCY_MS)
            two_workers_s, _, used = bench.timed_llm_run("two-workers", SPEEDUP_ROWS)
            figures["celery_2_workers_used_by_llm_steps"] = float(used)
            figures["celery_step_overhead_s"] = bench.step_overhead("noop_chain_celery")
            bench.stop_worker(next(iter(bench.workers)))
            one_worker_s, _, _ = bench.timed_llm_run("one-worker", SPEEDUP_ROWS)
            figures["celery_2_workers_s"] = two_workers_s
            figures["celery_1_worker_s"] = one_worker_s
            figures["celery_speedup_2_workers_vs_1"] = one_worker_s / two_workers_s
            figures["multiprocess_step_overhead_s"] = bench.step_overhead(
                "noop_chain_multiprocess"
            )

            bench.start_worker("bench-w3")
            bench.wait_for_workers()
            sim.configure(rpm=RPM, window_s=60.0, limit_mode="bucket", latency_ms=LATENCY_MS)
            seconds, answered, used = bench.timed_llm_run("limited")
            counts = sim.stats()["status_counts"]
            limited = {
                "celery_2_workers_fraction_of_limit": answered / (RPM / 60 * seconds),
                "celery_2_workers_429_rate": counts.get("429", 0) / sum(counts.values()),
                "celery_limited_workers_used_by_llm_steps": float(used),
            }
            figures = limited | figures
        finally:
            bench.close()
            redis.Redis.from_url(broker).flushdb()
    shutil.rmtree(tmp, ignore_errors=True)
    return figures
