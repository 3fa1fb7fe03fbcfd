"""Helpers for the Celery tests: Redis, dagster-celery workers and the daemon as subprocesses.

Everything runs for real: Redis started by ``tools/redis.sh`` when it is down, workers started
with ``dagster-celery worker start -A dagster_celery.app -y celery.yaml`` (the project's
config), the daemon with ``dagster-daemon run``, all on a Postgres instance built from the
repository's ``dagster.yaml``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.conftest import REPO_ROOT, TEST_API_KEY

BIN = Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin"
PARTITIONS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _exe(name: str) -> str:
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    import sys

    return str(Path(sys.executable).parent / name)


def ensure_redis() -> None:
    """Starts Redis with the project's script when it is down; skips the test if it cannot."""
    proc = subprocess.run(
        [str(REPO_ROOT / "tools" / "redis.sh")], capture_output=True, text=True, timeout=30
    )
    if proc.returncode != 0:
        pytest.skip(f"Redis is needed on 127.0.0.1:6379 and could not be started: {proc.stderr}")


@dataclass
class Cluster:
    """A Postgres instance, its environment, and the processes that serve it."""

    home: Path
    data_dir: Path
    env: dict[str, str]
    instance: dg.DagsterInstance
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = Path()

    def start_worker(self, name: str) -> str:
        """Starts one single-process worker; returns its Celery hostname."""
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [
                _exe("dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                "-y", str(REPO_ROOT / "celery.yaml"), "-n", name,
                "--", "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        hostname = f"{name}@{socket.gethostname()}"
        self.workers[hostname] = proc
        return hostname

    def start_daemon(self) -> None:
        log = open(self.logs / "daemon.log", "wb")  # noqa: SIM115
        self.others.append(
            subprocess.Popen(
                [_exe("dagster-daemon"), "run", "-m", "reviews_example.definitions"],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def wait_for_workers(self, timeout_s: float = 180) -> None:
        """Waits until every started worker answers a ping through the broker."""
        from celery import Celery

        app = Celery(broker=self.env["LLM_ASSETS_CELERY_BROKER"])
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                exited = [h for h, p in self.workers.items() if p.poll() is not None]
                assert not exited, f"workers {exited} exited:\n{self.tail_logs()}"
                replies = app.control.ping(timeout=1.0)
                if set(self.workers) <= {name for reply in replies for name in reply}:
                    return
                time.sleep(1)
        finally:
            app.close()
        raise AssertionError(f"workers did not answer in {timeout_s} s:\n{self.tail_logs()}")

    def kill_worker(self, hostname: str) -> None:
        """SIGKILL to the worker's whole process group: the machine went away."""
        os.killpg(self.workers[hostname].pid, signal.SIGKILL)
        self.workers[hostname].wait(timeout=30)

    def start_dagster(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        """Starts a ``dagster`` CLI command in the cluster's environment."""
        log = open(self.logs / f"{log_name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [_exe("dagster"), *args], cwd=REPO_ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.others.append(proc)
        return proc

    def dagster(self, *args: str, timeout_s: float = 180) -> str:
        proc = subprocess.run(
            [_exe("dagster"), *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
            text=True, timeout=timeout_s,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def wait_until(
        self, what: str, predicate: Callable[[], Any], timeout_s: float, interval_s: float = 1.0
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval_s)
        logs = self.tail_logs()
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")

    def tail_logs(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *self.others]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in [*self.workers.values(), *self.others]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


#: Redis databases the Celery tests may take (0 and 1 are `make workers`', 14 the benchmark's).
TEST_REDIS_DBS = range(2, 14)
CLAIM_KEY = "llm-assets-tests:claimed-by"
CLAIM_TTL_S = 1800  # longer than any test's timeout; a crashed session's claim expires


def claim_redis_db() -> str:
    """Empties a Redis database nobody else holds and claims it; returns its URL.

    The claim (a key in that database, set only where none exists, in the same transaction as
    the flush) keeps any other cluster, of this session or of another one on the machine, off
    the database and its queue until ``flushdb`` at the end removes it.
    """
    import redis

    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    candidates = list(TEST_REDIS_DBS)
    random.shuffle(candidates)
    for db in candidates:
        url = f"redis://127.0.0.1:6379/{db}"
        client = redis.Redis.from_url(url)
        try:
            with client.pipeline() as pipe:
                pipe.watch(CLAIM_KEY)
                if pipe.exists(CLAIM_KEY):
                    continue
                pipe.multi()
                pipe.flushdb()
                pipe.set(CLAIM_KEY, token, ex=CLAIM_TTL_S)
                pipe.execute()
                return url
        except redis.WatchError:
            continue  # claimed by someone else between the check and the flush
        finally:
            client.close()
    pytest.fail(f"every Redis database {TEST_REDIS_DBS} is claimed by another test session")


@contextmanager
def celery_cluster(
    tmp_path: Path, postgres_url: str, simulator_url: str, **env_overrides: str
) -> Iterator[Cluster]:
    """A Postgres instance with the project's ``dagster.yaml``, environment for prod resources
    against the simulator, and the Celery executor on a Redis database of its own."""
    ensure_redis()
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The repository's instance config, with the daemon's loops tightened for a test.
    config = (REPO_ROOT / "dagster.yaml").read_text()
    config = config.replace(
        "max_concurrent_runs: 8", "max_concurrent_runs: 8\n    dequeue_interval_seconds: 1"
    )
    (home / "dagster.yaml").write_text(config)
    logs = tmp_path / "logs"
    logs.mkdir()
    import redis

    broker = claim_redis_db()
    env = {
        **os.environ,
        # dagster-celery starts `celery` from PATH.
        "PATH": f"{Path(_exe('celery')).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": postgres_url,
        "LLM_ASSETS_ENV": "prod",
        "LLM_ASSETS_OFFLINE": "1",
        "OPENAI_API_KEY": TEST_API_KEY,
        "LLM_ASSETS_BASE_URL": simulator_url,
        "LLM_ASSETS_MODEL": "sim-small",
        "LLM_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "LLM_ASSETS_EXECUTOR": "celery",
        "LLM_ASSETS_CELERY_BROKER": broker,
        "LLM_ASSETS_CELERY_BACKEND": broker,
        "DAGSTER_TELEMETRY_DISABLED": "1",
        # The daemon looks for failed runs to retry every second rather than every 5.
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **env_overrides,
    }
    old_home = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = postgres_url
    instance = dg.DagsterInstance.from_config(str(home))
    cluster = Cluster(home, tmp_path / "data", env, instance, logs=logs)
    try:
        yield cluster
    finally:
        cluster.stop()
        instance.dispose()
        if old_home is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = old_home
        redis.Redis.from_url(broker).flushdb()  # the claim goes with the queue


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> Celery worker that ran it, from the run's engine events."""
    found: dict[str, str] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        if event is None or event.engine_event_data is None:
            continue
        worker = event.engine_event_data.metadata.get("Celery worker")
        if worker is not None and event.step_key:
            found[event.step_key] = str(worker.value)
    return found


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
