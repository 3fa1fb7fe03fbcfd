"""Tools, assets and definitions for the planner tests, configured by environment variables.

Steps of the multiprocess executor (and runs launched by the webserver) import this module in
other processes, so everything they need comes from the environment, and every tool counts
its own invocations in files under ``$PLANNER_TEST_DIR`` (one line per call).

- ``PLANNER_TEST_DIR``: counters, Parquet files and the SQLite ledger.
- ``PLANNER_TEST_BASE_URL``: the simulator.
- ``PLANNER_TEST_TOOLS``: comma-separated allowlist (default ``lookup_product``).
- ``PLANNER_TEST_ROWS``: JSON list of ``[product, text]`` rows of the upstream asset.
- ``PLANNER_TEST_LEDGER_PG``: Postgres URL of the ledger (default: SQLite in the directory).
- ``PLANNER_TEST_RETRIES``: retries of the tool op (default 2, 0.05 s apart).
- ``PLANNER_TEST_CALLS_PER_STEP`` / ``PLANNER_TEST_MAX_CALLS``: batching and the fan-out cap.
"""

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import BaseModel, Field

from llm_assets.planner import planned_asset, tool
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.task import LLMTask

API_KEY = "sk-test-DO-NOT-LEAK-4f9c2a7e1b"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-11-01")
PARTITION = "2026-11-02"
ASSET = "ticket_notes"


def _dir() -> Path:
    return Path(os.environ.get("PLANNER_TEST_DIR", ".planner_test"))


def bump(name: str) -> int:
    """Counts one invocation of ``name``; returns how many there have been."""
    path = _dir() / "counters" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


def count(name: str, directory: Path | None = None) -> int:
    """How many times ``name`` was invoked."""
    path = (directory or _dir()) / "counters" / f"{name}.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


class ProductArgs(BaseModel):
    product: str = Field(description="Product name.")


class ProductFacts(BaseModel):
    product: str
    mentions: int


class Confirm(BaseModel):
    confirm: bool


class Done(BaseModel):
    done: bool


class TicketRef(BaseModel):
    ticket: str


@tool
def lookup_product(args: ProductArgs) -> ProductFacts:
    """Looks a product up in the catalogue."""
    bump("lookup_product")
    return ProductFacts(product=args.product, mentions=len(args.product))


@tool
def flaky_stats(args: ProductArgs) -> ProductFacts:
    """Product statistics from a backend that fails its first two calls."""
    if bump("flaky_stats") <= 2:
        raise RuntimeError("statistics backend timed out")
    return ProductFacts(product=args.product, mentions=7)


@tool
def fragile_lookup(args: ProductArgs) -> ProductFacts:
    """A lookup whose backend is down for product 'lamp' until ``fragile.fixed`` exists."""
    bump(f"fragile_lookup_{args.product}")
    if args.product == "lamp" and not (_dir() / "fragile.fixed").exists():
        raise RuntimeError("inventory backend is down for lamp")
    return ProductFacts(product=args.product, mentions=1)


@tool(side_effects=True)
def open_ticket(args: ProductArgs) -> TicketRef:
    """Opens a support ticket for a product (a side effect)."""
    bump("open_ticket")
    return TicketRef(ticket=f"T-{args.product}")


@tool
def delete_everything(args: Confirm) -> Done:
    """Deletes every record. Never allowlisted by any test asset."""
    bump("delete_everything")
    return Done(done=True)


@tool
def slow_lookup(args: ProductArgs) -> ProductFacts:
    """A lookup that waits on a slow backend for ``PLANNER_TOOL_SLEEP_S`` seconds."""
    time.sleep(float(os.environ.get("PLANNER_TOOL_SLEEP_S", "2")))
    bump("slow_lookup")
    return ProductFacts(product=args.product, mentions=2)


class Note(BaseModel):
    summary: str
    priority: Literal["low", "medium", "high"]


NOTE_TASK = LLMTask(
    name="ticket_note",
    user_prompt="Ticket {ticket_id}: {text}\nTool results: {tool_results}",
    output_schema=Note,
    id_column="ticket_id",
    max_output_tokens=200,
)


def rows() -> list[list[str]]:
    """The upstream rows, ``[product, text]``."""
    default = [["lamp", "The lamp flickers."], ["desk", "The desk wobbles."]]
    return json.loads(os.environ.get("PLANNER_TEST_ROWS", json.dumps(default)))


@dg.asset(partitions_def=DAILY, backfill_policy=dg.BackfillPolicy.single_run())
def tickets(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """Support tickets of the day."""
    return pd.DataFrame(
        {
            "ticket_id": [f"{context.partition_key}-{i}" for i in range(len(rows()))],
            "product": [product for product, _ in rows()],
            "text": [text for _, text in rows()],
        }
    )


def build_assets(**overrides: Any) -> list[dg.AssetsDefinition]:
    """The upstream asset and the planner asset, with ``overrides`` for ``planned_asset``."""
    retries = int(os.environ.get("PLANNER_TEST_RETRIES", "2"))
    options: dict[str, Any] = {
        "name": ASSET,
        "upstream": tickets,
        "planner_prompt": "product: {product}\nticket: {text}",
        "tools": os.environ.get("PLANNER_TEST_TOOLS", "lookup_product").split(","),
        "synthesizer": NOTE_TASK,
        "passthrough_columns": ["product"],
        "calls_per_step": int(os.environ.get("PLANNER_TEST_CALLS_PER_STEP", "1")),
        "max_tool_calls": int(os.environ.get("PLANNER_TEST_MAX_CALLS", "64")),
        "tool_retry_policy": dg.RetryPolicy(
            max_retries=retries,
            delay=0.05,
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        ),
    }
    options.update(overrides)
    return [tickets, planned_asset(**options)]


def build_resources() -> dict[str, Any]:
    """Resources bound to the simulator and the test directory."""
    directory = _dir()
    pg = os.environ.get("PLANNER_TEST_LEDGER_PG")
    ledger = (
        ResponseLedger(backend="postgres", postgres_url=pg)
        if pg
        else ResponseLedger(backend="sqlite", sqlite_path=str(directory / "ledger.sqlite"))
    )
    return {
        "llm": LLMResource(
            base_url=os.environ.get("PLANNER_TEST_BASE_URL", "http://127.0.0.1:8765/v1"),
            api_key=API_KEY,
            model="sim-small",
            retry_backoff_s=0.01,
            retry_backoff_max_s=0.1,
        ),
        "ledger": ledger,
        "io_manager": ParquetIOManager(base_dir=str(directory / "data")),
    }


def build_defs(executor: dg.ExecutorDefinition | None = None, **overrides: Any) -> dg.Definitions:
    """Definitions with ``planner_job`` over both assets."""
    assets = build_assets(**overrides)
    job = dg.define_asset_job("planner_job", selection=dg.AssetSelection.assets(*assets))
    return dg.Definitions(
        assets=assets, jobs=[job], resources=build_resources(), executor=executor
    )


def planner_job() -> dg.JobDefinition:
    """The job, rebuilt from the environment in every process (``dg.reconstructable``)."""
    return build_defs().resolve_job_def("planner_job")


def env(directory: Path, base_url: str, **extra: str) -> dict[str, str]:
    """The environment variables of one test."""
    return {"PLANNER_TEST_DIR": str(directory), "PLANNER_TEST_BASE_URL": base_url, **extra}
