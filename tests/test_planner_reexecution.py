"""Planner assets under the multiprocess executor: parallel tool steps, re-execution from
failure (only the failed call runs again, paid LLM calls come from the ledger), on SQLite and
Postgres instances."""

from __future__ import annotations

import json
import multiprocessing.forkserver
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets.resources.ledger import ResponseLedger
from llm_assets.simulator import SimulatorServer
from llm_assets.trace import trace_row
from tests import planner_support as support
from tests.planner_support import ASSET, PARTITION, count

# Each step in a process of its own, forked from a server that has imported the job's module
# once, rather than spawned to import it again (a few seconds of CPU per step).
FORKSERVER = {"forkserver": {"preload_modules": ["tests.planner_support"]}}
RUN_CONFIG = {
    "execution": {"config": {"multiprocess": {"max_concurrent": 4, "start_method": FORKSERVER}}}
}
TAGS = {"dagster/partition": PARTITION}


@pytest.fixture(autouse=True)
def _fresh_forkserver() -> Iterator[None]:
    """A fork server per test: it starts with the environment of the test that first uses it,
    and the steps it forks read their settings (``PLANNER_TEST_*``) from that environment."""
    multiprocessing.forkserver._forkserver._stop()
    yield
    multiprocessing.forkserver._forkserver._stop()


def _execute(instance: dg.DagsterInstance, **kwargs: Any) -> dg.ExecuteJobResult:
    return dg.execute_job(
        dg.reconstructable(support.planner_job),
        instance=instance,
        run_config=RUN_CONFIG,
        tags=TAGS,
        raise_on_error=False,
        **kwargs,
    )


def _steps(instance: dg.DagsterInstance, run_id: str, kind: str) -> list[str]:
    return sorted(
        record.dagster_event.step_key or ""
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
        if record.dagster_event and f"_{kind}" in (record.dagster_event.step_key or "")
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reexecution_from_failure_reruns_only_the_failed_call(
    tmp_path: Path,
    simulator: SimulatorServer,
    sqlite_instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = support.env(
        tmp_path,
        simulator.base_url,
        PLANNER_TEST_TOOLS="lookup_product,fragile_lookup",
        PLANNER_TEST_RETRIES="1",
        PLANNER_TEST_ROWS=json.dumps([["lamp", "The lamp flickers."]]),
    )
    for key, value in environment.items():
        monkeypatch.setenv(key, value)

    first = _execute(sqlite_instance)
    assert not first.success
    # One row, two tools: two mapped steps; the fragile lookup failed (and was retried once).
    assert len(_steps(sqlite_instance, first.run_id, "tools[")) == 2
    assert count("lookup_product") == 1
    assert count("fragile_lookup_lamp") == 2
    planner_requests = simulator.stats()["chat_completions"]
    assert planner_requests == 1

    (tmp_path / "fragile.fixed").touch()
    options = dg.ReexecutionOptions.from_failure(first.run_id, sqlite_instance)
    second = _execute(sqlite_instance, reexecution_options=options)
    assert second.success
    assert _steps(sqlite_instance, second.run_id, "tools[") == [
        f"{ASSET}.{ASSET}_tools[fragile_lookup_00001]"
    ]
    assert count("lookup_product") == 1
    assert count("fragile_lookup_lamp") == 3
    # The plan came from the failed run: no planner request; the synthesizer, which never ran,
    # asked once for the row.
    assert simulator.stats()["chat_completions"] == planner_requests + 1
    ledger = ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite"))
    assert ledger.spend(run_id=second.run_id)[0] == 1
    assert ledger.spend(run_id=first.run_id)[0] == 1

    table = pd.read_parquet(tmp_path / "data" / ASSET / f"{PARTITION}.parquet")
    assert (table["llm_status"] == "ok").all()
    lamp = json.loads(table["tool_calls"][0])
    assert [(c["tool"], c["status"]) for c in lamp] == [
        ("lookup_product", "ok"),
        ("fragile_lookup", "ok"),
    ]

    # A new materialization is answered by the ledger: no new LLM request at all.
    sent = simulator.stats()["chat_completions"]
    third = dg.materialize(
        support.build_assets(),
        resources=support.build_resources(),
        instance=sqlite_instance,
        partition_key=PARTITION,
    )
    assert third.success
    assert simulator.stats()["chat_completions"] == sent


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_runs_on_a_postgres_instance_and_traces_rows_to_their_calls(
    tmp_path: Path,
    simulator: SimulatorServer,
    postgres_instance: dg.DagsterInstance,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment = support.env(
        tmp_path,
        simulator.base_url,
        PLANNER_TEST_TOOLS="lookup_product,open_ticket",
        PLANNER_TEST_LEDGER_PG=postgres_url,
        PLANNER_TEST_ROWS=json.dumps([["desk", "The desk wobbles."]]),
    )
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    result = _execute(postgres_instance)
    assert result.success
    assert len(_steps(postgres_instance, result.run_id, "tools[")) == 2
    assert count("open_ticket") == 1 and count("lookup_product") == 1

    trace = trace_row(
        support.build_defs(), postgres_instance, ASSET, f"{PARTITION}-0", partition=PARTITION
    )
    assert trace.status == "ok"
    assert [c["tool"] for c in trace.tool_calls] == ["lookup_product", "open_ticket"]
    assert trace.tool_calls[1]["result"] == {"ticket": "T-desk"}
    assert trace.plan_request_hash is not None
    assert trace.upstream[0].input_row is not None
    assert trace.upstream[0].input_row["product"] == "desk"
