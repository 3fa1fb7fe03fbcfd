"""Fully cached re-materialization of 100k rows, and bulk ledger lookups, on SQLite and Postgres.

The ledger is filled directly with one schema-valid answer per rendered request (paying the
simulator for 100k calls would only measure the simulator). Then the ``llm_asset`` is
materialized for real with ``dg.materialize`` on a SQLite Dagster instance, its upstream
already on disk: every row must be a ledger hit, so the simulator's request counter must not
move. ``cached_rows_per_s_*`` is rows / wall time of that materialization (Dagster step start-up,
Parquet read, rendering, hashing, bulk lookup, validation, Parquet write).
Postgres figures need a server on 127.0.0.1:5432; without one they print ``n/a``.
"""

import json
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from llm_assets import LLMTask, llm_asset
from llm_assets.rendering import plan_rows
from llm_assets.resources.ledger import LedgerEntry, ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.simulator import SimulatorServer

ROWS = 100_000
PARTS = dg.StaticPartitionsDefinition(["day"])
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


class Tag(BaseModel):
    label: str
    score: int


TASK = LLMTask(
    name="tags",
    system_prompt="Tag the ticket.",
    user_prompt="Ticket {ticket_id}: {text}",
    output_schema=Tag,
    id_column="ticket_id",
    model="sim-small",
)


def _tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticket_id": [f"t{i:06d}" for i in range(ROWS)],
            "text": [f"printer on floor {i % 40} jams when printing page {i}" for i in range(ROWS)],
        }
    )


@dg.asset(partitions_def=PARTS)
def tickets() -> pd.DataFrame:
    """The benchmark's input rows."""
    return _tickets()


tags = llm_asset(TASK, upstream=tickets)


def answer(i: int) -> dict[str, Any]:
    """The ``i``-th schema-valid chat completion body the ledger is filled with."""
    content = json.dumps({"label": f"label {i % 7}", "score": i % 5})
    return {
        "model": "sim-small",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": 60, "completion_tokens": 12, "total_tokens": 72},
    }


def fill_ledger(
    ledger: ResponseLedger, frame: pd.DataFrame, first: int = 0, chunk: int = 5_000
) -> list[str]:
    """Put one schema-valid answer per request that ``TASK`` renders from ``frame``.

    Args:
        ledger: The ledger to fill.
        frame: Ticket rows (``ticket_id``, ``text``) of partition ``day``.
        first: Number of the first row's answer (see ``answer``).
        chunk: Entries per ``put_many`` call.

    Returns:
        The requests' ledger keys, in row order.
    """
    _, requests = plan_rows(TASK, {"day": frame}, "sim-small", None)
    now = datetime.now(UTC)
    entries = [
        LedgerEntry(
            key=key,
            response=answer(first + i),
            request=request.body,
            model="sim-small",
            input_tokens=60,
            output_tokens=12,
            cost_usd=1.6e-5,
            latency_s=0.3,
            created_at=now,
            run_id="bench",
            asset_key="tags",
            partition_key="day",
            task_version=TASK.version,
        )
        for i, (key, request) in enumerate(requests.items())
    ]
    backend = ledger.get_backend()
    for start in range(0, len(entries), chunk):
        backend.put_many(entries[start : start + chunk])
    return list(requests)


def _measure(ledger: ResponseLedger, name: str, workdir: Path) -> dict[str, float]:
    keys = fill_ledger(ledger, _tickets())
    backend = ledger.get_backend()
    started = time.perf_counter()
    found = backend.get_many(keys)
    lookup_s = time.perf_counter() - started
    assert len(found) == ROWS
    for entry in found.values():  # decoding is part of a real lookup's cost
        _ = entry.response
    decode_s = time.perf_counter() - started

    with SimulatorServer() as simulator:
        resources: dict[str, Any] = {
            "llm": LLMResource(base_url=simulator.base_url, api_key="sk-bench", model="sim-small"),
            "ledger": ledger,
            "io_manager": ParquetIOManager(base_dir=str(workdir / "data")),
        }
        workdir.mkdir(parents=True, exist_ok=True)
        with dg.instance_for_test(temp_dir=str(workdir)) as instance:
            dg.materialize([tickets], partition_key="day", resources=resources, instance=instance)
            started = time.perf_counter()
            result = dg.materialize(
                [tickets, tags],
                selection=[tags],
                partition_key="day",
                resources=resources,
                instance=instance,
            )
            wall = time.perf_counter() - started
        sent = simulator.stats()["requests_total"]
    assert result.success
    table = pd.read_parquet(workdir / "data" / "tags" / "day.parquet")
    assert len(table) == ROWS and bool(table["llm_cached"].all())
    return {
        f"cached_rows_per_s_{name}": ROWS / wall,
        f"cached_requests_sent_{name}": sent,
        f"ledger_get_many_rows_per_s_{name}": ROWS / lookup_s,
        f"ledger_get_many_decoded_rows_per_s_{name}": ROWS / decode_s,
    }


def _postgres_url() -> tuple[str, str] | None:
    try:
        import psycopg2

        conn = psycopg2.connect(PG_ADMIN)
    except Exception:
        return None
    conn.autocommit = True
    name = f"llm_assets_bench_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name, f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def _drop(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def run() -> dict[str, float | str]:
    warnings.filterwarnings("ignore")
    figures: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = ResponseLedger(backend="sqlite", sqlite_path=str(Path(tmp) / "ledger.sqlite"))
        figures.update(_measure(sqlite, "sqlite", Path(tmp) / "sqlite"))
    pg = _postgres_url()
    if pg is None:
        figures.update(
            {"cached_rows_per_s_postgres": "n/a", "ledger_get_many_rows_per_s_postgres": "n/a"}
        )
        return figures
    name, url = pg
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = ResponseLedger(backend="postgres", postgres_url=url)
            figures.update(_measure(ledger, "postgres", Path(tmp)))
            ledger.get_backend().close()
    finally:
        _drop(name)
    return figures
