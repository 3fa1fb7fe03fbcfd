"""Steps on dagster-celery workers, with a watch that notices a worker that died mid-step.

``dagster_celery.celery_executor`` sends each step to a Celery queue and polls its result. A
task is acknowledged when a worker starts it, so when that worker dies outright (SIGKILL, a
lost node, a deleted pod) nothing ever answers: the result stays ``STARTED`` and the run waits
forever. ``watched_celery_executor`` is the same executor (same config, same workers, started
with ``dagster-celery worker start -A dagster_celery.app -y celery.yaml``) plus one check: while
a step is ``STARTED``, the worker that took it is pinged through the broker; a worker that has
not answered for ``worker_lost_after_s`` fails the step with :class:`CeleryWorkerLost`, the run
fails, and the daemon's run retries (``dagster.yaml``) re-execute it from failure on the
workers that remain. The response ledger answers every row the lost step had already paid
for, so the retry pays only for the calls that were in flight.

A worker whose pool process is killed (the kernel's OOM killer picks the busy child) is
reported by Celery itself as ``WorkerLostError``; the run fails and is retried the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from dagster._core.execution.retries import RetryMode
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor, _submit_task

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/1"

#: Celery settings for the workers and the executor alike (``celery.yaml`` repeats them).
#: ``task_track_started`` tells the executor which worker runs a step, so the watch knows whom
#: to ping. ``worker_disable_prefetch`` (Redis brokers) makes a worker take a task only when a
#: process is free: without it a busy worker holds one more step, unacknowledged, which a dead
#: worker would keep hidden until the broker's visibility timeout (an hour) ran out. RabbitMQ
#: hands such a message to another worker as soon as the connection drops, and ignores it.
CELERY_SETTINGS: dict[str, Any] = {
    "task_track_started": True,
    "worker_disable_prefetch": True,
    "worker_prefetch_multiplier": 1,
    "result_expires": 86400,
}

WATCH_CONFIG = {
    **CELERY_CONFIG,
    "worker_lost_after_s": dg.Field(
        float,
        default_value=60.0,
        description="A worker that runs a step and answers no ping for this long is declared "
        "lost: the step fails with CeleryWorkerLost and the run can be retried.",
    ),
    "ping_interval_s": dg.Field(
        float, default_value=5.0, description="Seconds between pings of a busy worker."
    ),
}


class CeleryWorkerLost(Exception):
    """The Celery worker running a step stopped answering (killed, out of memory, node lost)."""


def celery_config(broker: str | None = None, backend: str | None = None) -> dict[str, Any]:
    """The executor's config for this project's Celery workers.

    Args:
        broker: Broker URL; defaults to ``LLM_ASSETS_CELERY_BROKER`` or local Redis db 0
            (RabbitMQ: ``pyamqp://user:password@host:5672//``).
        backend: Result backend URL; defaults to ``LLM_ASSETS_CELERY_BACKEND`` or local Redis
            db 1.

    ``LLM_ASSETS_CELERY_WORKER_LOST_AFTER_S`` (default 60) sets how long a busy worker may stay
    silent before its step fails with ``CeleryWorkerLost``.

    Returns:
        A config dict for ``watched_celery_executor.configured(...)``.

    Examples:
        >>> celery_config("redis://queue.internal:6379/0")["broker"]
        'redis://queue.internal:6379/0'
    """
    return {
        "broker": broker or os.environ.get("LLM_ASSETS_CELERY_BROKER", DEFAULT_BROKER),
        "backend": backend or os.environ.get("LLM_ASSETS_CELERY_BACKEND", DEFAULT_BACKEND),
        "config_source": dict(CELERY_SETTINGS),
        "worker_lost_after_s": float(
            os.environ.get("LLM_ASSETS_CELERY_WORKER_LOST_AFTER_S", "60")
        ),
    }


class _WorkerWatch:
    """Pings the workers that run this run's steps; remembers when each last answered."""

    def __init__(self, app: Any, lost_after_s: float, ping_interval_s: float) -> None:
        self._app = app
        self._lost_after_s = lost_after_s
        self._ping_interval_s = ping_interval_s
        self._last_answer: dict[str, float] = {}
        self._last_ping: dict[str, float] = {}

    def silent_for(self, hostname: str) -> float:
        """Seconds since ``hostname`` last answered (pinging it when a ping is due)."""
        now = time.monotonic()
        self._last_answer.setdefault(hostname, now)
        if now - self._last_ping.get(hostname, 0.0) >= self._ping_interval_s:
            self._last_ping[hostname] = now
            replies = self._app.control.ping(destination=[hostname], timeout=1.0, limit=1)
            if any(hostname in reply for reply in replies):
                self._last_answer[hostname] = time.monotonic()
        return time.monotonic() - self._last_answer[hostname]

    def lost(self, hostname: str) -> bool:
        return self.silent_for(hostname) >= self._lost_after_s

    @property
    def lost_after_s(self) -> float:
        return self._lost_after_s


class _WatchedResult:
    """A Celery ``AsyncResult`` that also becomes ready when its worker is lost."""

    def __init__(self, result: Any, step_key: str, watch: _WorkerWatch) -> None:
        self._result = result
        self._step_key = step_key
        self._watch = watch
        self._lost_worker: str | None = None

    def ready(self) -> bool:
        if self._result.ready():
            return True
        if self._result.state == "STARTED":
            info = self._result.info
            hostname = info.get("hostname") if isinstance(info, Mapping) else None
            if hostname and self._watch.lost(hostname):
                self._lost_worker = hostname
                return True
        return False

    def get(self) -> Any:
        if self._lost_worker is not None:
            # Revoked so that no worker runs the step later from a redelivered message.
            self._result.revoke()
            raise CeleryWorkerLost(
                f"Celery worker {self._lost_worker!r} stopped answering while running step "
                f"{self._step_key!r} (no reply to pings for {self._watch.lost_after_s:.0f} s: "
                "killed, out of memory, or its machine went away). The run fails here; with "
                "run retries on in dagster.yaml the daemon re-executes it from failure on the "
                "remaining workers, and the ledger answers every row already paid for."
            )
        return self._result.get()

    def revoke(self) -> None:
        self._result.revoke()


class WatchedCeleryExecutor(CeleryExecutor):
    """``CeleryExecutor`` whose steps fail with ``CeleryWorkerLost`` when their worker dies."""

    def __init__(
        self,
        retries: RetryMode,
        worker_lost_after_s: float,
        ping_interval_s: float,
        **celery_args: Any,
    ) -> None:
        super().__init__(retries=retries, **celery_args)
        self.worker_lost_after_s = worker_lost_after_s
        self.ping_interval_s = ping_interval_s

    def execute(self, plan_context: Any, execution_plan: Any) -> Any:
        """Runs the plan like ``CeleryExecutor``, each step's result watched for a lost worker."""
        watches: dict[int, _WorkerWatch] = {}

        def submit(
            app: Any, context: Any, step: Any, queue: str, priority: int, known_state: Any
        ) -> _WatchedResult:
            watch = watches.setdefault(
                id(app), _WorkerWatch(app, self.worker_lost_after_s, self.ping_interval_s)
            )
            result = _submit_task(app, context, step, queue, priority, known_state)
            return _WatchedResult(result, step.key, watch)

        step_execution_fn: Callable[..., Any] = submit
        return core_celery_execution_loop(
            plan_context, execution_plan, step_execution_fn=step_execution_fn
        )


@dg.executor(
    name="celery",
    config_schema=WATCH_CONFIG,
    requirements=dg.multiple_process_executor_requirements(),
)
def watched_celery_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """``dagster_celery.celery_executor`` that fails a step whose worker died mid-step.

    Same config as ``celery_executor`` (``broker``, ``backend``, ``include``,
    ``config_source``, ``retries``) plus ``worker_lost_after_s`` (60) and ``ping_interval_s``
    (5). Workers are plain dagster-celery workers started with this project's ``celery.yaml``.

    Examples:
        >>> job = dg.define_asset_job(
        ...     "nightly", executor_def=watched_celery_executor.configured(celery_config())
        ... )
        >>> job.name
        'nightly'
    """
    config: Mapping[str, Any] = init_context.executor_config
    return WatchedCeleryExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        broker=config.get("broker"),
        backend=config.get("backend"),
        include=config.get("include"),
        config_source=config.get("config_source"),
        worker_lost_after_s=float(config["worker_lost_after_s"]),
        ping_interval_s=float(config["ping_interval_s"]),
    )
