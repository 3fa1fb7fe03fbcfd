"""At the provider's limit when it is enforced per second and over the minute at once.

The simulator's ``combined`` mode: 600 requests (and 60k tokens) per minute, as buckets refilled
at limit/60 per second that hold one second of burst (``bucket`` mode) *and* as a sliding
60 s window that admits at most the limit (``window`` mode). A client that sends a burst and
then keeps to the refill rate passes the buckets but overfills the window a minute later; one
step of 600 rows ends before that minute is over, two steps sharing the key do not. Latency is
lognormal, mean 0.3 s; our engine runs with the resource's defaults (the ``bucket`` model) and
learns the limit from the headers.

Figures are measured as in ``bench/rate_limit_bucket.py`` (fraction of the limit from the
step's start to its last answer; 429 rate = 429 answers / all answers to the key), each case
run ``REPEATS`` times and reported as min / median / max:

- one step of 600 rows;
- two processes x 600 rows on one key sharing the limit through a SQLite store;
- the same through a PostgreSQL store (a fresh database on 127.0.0.1:5432, dropped after;
  ``combined_postgres: not available`` when no server answers). A run during which the
  server restarted is run again: both processes pace alone while it is down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress

from bench.rate_limit_bucket import (
    REPEATS,
    Series,
    limit_config,
    one_step,
    spread,
    two_processes,
)
from llm_assets.simulator import SimulatorProcess

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
POSTGRES_ATTEMPTS = 3


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on the local server, dropped afterwards; None if there is no server."""
    import psycopg2

    name = f"llm_assets_bench_limits_{uuid.uuid4().hex[:8]}"
    try:
        with closing(psycopg2.connect(PG_ADMIN)) as admin:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.OperationalError:
        yield None
        return
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        # A new connection: the server may have restarted since (other work shares it).
        with suppress(psycopg2.Error), closing(psycopg2.connect(PG_ADMIN)) as admin:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_started_at() -> str | None:
    """When the local PostgreSQL server started; None if it does not answer."""
    import psycopg2

    try:
        with closing(psycopg2.connect(PG_ADMIN)) as admin, admin.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()::text")
            row = cur.fetchone()
    except psycopg2.OperationalError:
        return None
    return str(row[0]) if row else None


def postgres_case(sim: SimulatorProcess, tag: str, url: str) -> tuple[float, float]:
    """``two_processes`` through the Postgres store, run again if the server restarted meanwhile.

    A restart makes both processes fall back to pacing alone, so that run measures nothing.
    """
    store = {"rate_limit_store": "postgres", "rate_limit_postgres_url": url}
    for attempt in range(POSTGRES_ATTEMPTS):
        before = server_started_at()
        figures = two_processes(sim, f"{tag}-{attempt}", store)
        if before is not None and server_started_at() == before:
            return figures
    raise RuntimeError(f"the PostgreSQL server restarted during {POSTGRES_ATTEMPTS} runs")


def run() -> dict[str, float | str]:
    """Every combined-mode case ``REPEATS`` times; figures as ``min / median / max``."""
    config = limit_config("combined")
    series = Series()
    note = series.note

    with SimulatorProcess(config) as sim, postgres_database() as postgres_url:
        for _ in range(REPEATS):
            run_id = uuid.uuid4().hex[:8]
            fraction, rate = one_step(sim, f"c-one-{run_id}")
            note("throughput_fraction_of_limit_combined", fraction)
            note("throughput_429_rate_combined", rate)
            fraction, rate = two_processes(sim, f"c-sqlite-{run_id}")
            note("two_process_sqlite_fraction_of_limit_combined", fraction)
            note("two_process_sqlite_429_rate_combined", rate)
            if postgres_url is None:
                continue
            fraction, rate = postgres_case(sim, f"c-pg-{run_id}", postgres_url)
            note("two_process_postgres_fraction_of_limit_combined", fraction)
            note("two_process_postgres_429_rate_combined", rate)
    figures: dict[str, float | str] = {"combined_runs": float(REPEATS)}
    if postgres_url is None:
        figures["combined_postgres"] = "not available (no server on 127.0.0.1:5432)"
    figures |= {name: spread(values) for name, values in series.items()}
    return figures


if __name__ == "__main__":
    for figure, value in run().items():
        print(f"{figure}: {value}", flush=True)
