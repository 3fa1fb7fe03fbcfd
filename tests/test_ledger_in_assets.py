"""No token paid twice: cache hits, crash resume, budgets, concurrent writers, secrets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import ModelPrice
from llm_assets.simulator import SimulatorServer
from tests.conftest import REPO_ROOT, TEST_API_KEY, make_resources
from tests.forked import LLM_ASSETS_MAIN, Finished, run, start
from tests.ledger_pipeline import MAIN, rows_for
from tests.test_llm_asset import REGIONS, make_task


def texts_asset(texts: list[str]) -> dg.AssetsDefinition:
    @dg.asset(name="texts", partitions_def=REGIONS)
    def _texts() -> pd.DataFrame:
        return pd.DataFrame({"id": range(len(texts)), "text": texts})

    return _texts


def _materialize(
    assets: list[dg.AssetsDefinition],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key="eu",
        resources=resources,
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def _meta(result: dg.ExecuteInProcessResult, asset: str = "label") -> dict[str, Any]:
    (materialization,) = [
        m for m in result.asset_materializations_for_node(asset) if m.asset_key.path == [asset]
    ]
    return {k: v.value for k, v in materialization.metadata.items()}


TEXTS = [f"customer message {i}: the parcel arrived late" for i in range(20)]


def test_unchanged_rematerialization_sends_nothing_and_one_edit_sends_one(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    asset = llm_asset(make_task(), upstream=texts_asset(TEXTS))
    first = _materialize([texts_asset(TEXTS), asset], resources, sqlite_instance)
    assert first.success
    assert simulator.stats()["chat_completions"] == 20

    again = _materialize([texts_asset(TEXTS), asset], resources, sqlite_instance)
    assert again.success
    assert simulator.stats()["chat_completions"] == 20
    meta = _meta(again)
    assert meta["requests_sent"] == 0 and meta["cache_hits"] == 20 and meta["hit_ratio"] == 1.0
    assert meta["cost_usd"] == 0 and meta["saved_usd"] == pytest.approx(_meta(first)["cost_usd"])

    edited = [*TEXTS]
    edited[7] = "customer message 7: the parcel never arrived"
    third = _materialize([texts_asset(edited), asset], resources, sqlite_instance)
    assert third.success
    assert simulator.stats()["chat_completions"] == 21
    assert _meta(third)["requests_sent"] == 1 and _meta(third)["cache_hits"] == 19


def test_changed_prompt_requests_every_row_again(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    source = texts_asset(TEXTS)
    assert _materialize(
        [source, llm_asset(make_task(), upstream=source)], resources, sqlite_instance
    ).success
    changed = llm_asset(make_task(user_prompt="Message: {text}"), upstream=source)
    result = _materialize([source, changed], resources, sqlite_instance)
    assert result.success
    assert simulator.stats()["chat_completions"] == 40
    assert _meta(result)["cache_hits"] == 0


def test_identical_rows_are_sent_once(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    source = texts_asset(["same text"] * 10 + ["other text"])
    result = _materialize(
        [source, llm_asset(make_task(), upstream=source)], resources, sqlite_instance
    )
    assert result.success
    assert simulator.stats()["chat_completions"] == 2
    assert _meta(result)["duplicates_collapsed"] == 9 and _meta(result)["ok"] == 11


def test_budget_too_small_fails_before_any_request(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    source = texts_asset(TEXTS)
    asset = llm_asset(make_task(), upstream=source, max_cost_usd=0.000001)
    result = _materialize([source, asset], resources, sqlite_instance)
    assert not result.success
    message = _failure(result)
    assert "BudgetExceededError" in message
    assert "estimated at $" in message and "budget of $0.000001;" in message
    assert "spent $0. Raise" in message
    assert simulator.stats()["requests_total"] == 0


def test_budget_reached_mid_run_stops_sending_and_keeps_what_was_paid(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, tmp_path: Path
) -> None:
    # Output tokens alone are priced ($1 per 1M) and the task expects 1-token answers, so the
    # estimate ($0.0002 for 200 rows) passes and actual spend (~30 tokens a call) hits the cap.
    prices = {"sim-small": ModelPrice(input_per_million=0.0, output_per_million=1.0)}
    resources = make_resources(simulator, tmp_path, prices=prices, max_concurrency=4)
    source = texts_asset([f"message {i}: the parcel arrived late" for i in range(200)])
    asset = llm_asset(make_task(expected_output_tokens=1), upstream=source)
    result = _materialize(
        [source, asset],
        resources,
        sqlite_instance,
        run_config={"ops": {"label": {"config": {"max_cost_usd": 0.0006}}}},
    )
    assert not result.success
    message = _failure(result)
    assert "stopped sending after spending $" in message and "requests were not sent" in message
    paid = simulator.stats()["chat_completions"]
    assert 5 <= paid < 100
    ledger = ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite"))
    assert ledger.get_backend().count() == paid

    rerun = _materialize([source, asset], resources, sqlite_instance)
    assert rerun.success
    assert simulator.stats()["chat_completions"] == 200
    assert _meta(rerun)["cache_hits"] == paid


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def _subprocess_env(
    tmp_path: Path, simulator: SimulatorServer, ledger: str, **extra: str
) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        TEST_SIM_URL=simulator.base_url,
        TEST_LEDGER=ledger,
        TEST_DATA_DIR=str(tmp_path / "data"),
        TEST_API_KEY=TEST_API_KEY,
        PYTHONPATH=str(REPO_ROOT),
        **extra,
    )
    return env


@pytest.mark.slow
def test_sigkill_half_way_then_rerun_pays_only_for_the_rest(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    rows, concurrency = 2000, 16
    simulator.configure(latency_ms=25, latency_jitter=0.3)
    ledger_path = tmp_path / "ledger.sqlite"
    env = _subprocess_env(
        tmp_path,
        simulator,
        f"sqlite:{ledger_path}",
        TEST_ROWS=str(rows),
        TEST_CONCURRENCY=str(concurrency),
        TEST_CLAIM_LEASE_S="3",  # the re-run waits out the killed run's claims
    )
    worker = start(MAIN, "p1", env=env, cwd=REPO_ROOT, logs=tmp_path / "killed")
    ledger = ResponseLedger(backend="sqlite", sqlite_path=str(ledger_path))
    deadline = time.monotonic() + 120
    recorded = 0
    while time.monotonic() < deadline and worker.poll() is None:
        if ledger_path.exists():
            recorded = ledger.get_backend().count()
            if recorded >= rows // 2:
                break
        time.sleep(0.05)
    assert worker.poll() is None, "the worker finished before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout_s=30) == -signal.SIGKILL
    paid_before = simulator.stats()["chat_completions"]
    assert rows // 3 <= paid_before < rows

    rerun = start(MAIN, "p1", env=env, cwd=REPO_ROOT, logs=tmp_path / "rerun")
    assert rerun.wait(timeout_s=300) == 0, rerun.output()[-4000:]
    stats = simulator.stats()
    unique = rows_for("p1", rows)["doc_id"].nunique()
    assert stats["chat_completions"] <= unique + concurrency
    table = pd.read_parquet(tmp_path / "data" / "doc_summaries" / "p1.parquet")
    assert len(table) == rows and table["doc_id"].is_unique
    assert set(table["doc_id"]) == set(rows_for("p1", rows)["doc_id"])
    assert (table["llm_status"] == "ok").all()
    assert table["llm_cached"].sum() >= recorded


@pytest.mark.postgres
@pytest.mark.slow
def test_two_partitions_in_parallel_share_the_postgres_ledger(
    simulator: SimulatorServer, tmp_path: Path, postgres_url: str
) -> None:
    simulator.configure(latency_ms=5)
    # The runs' instance is the production one on Postgres; creating its schema once up front
    # keeps the two processes from racing to migrate it.
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    env = _subprocess_env(
        tmp_path, simulator, postgres_url, TEST_ROWS="300", DAGSTER_PG_URL=postgres_url
    )
    os.environ["DAGSTER_PG_URL"] = postgres_url
    try:
        dg.DagsterInstance.from_config(str(home)).dispose()
    finally:
        del os.environ["DAGSTER_PG_URL"]
    dagster = str(Path(sys.executable).with_name("dagster"))
    procs = [
        subprocess.Popen(
            [
                dagster,
                "asset",
                "materialize",
                "-m",
                "tests.ledger_pipeline",
                "--select",
                "*",
                "--partition",
                partition,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for partition in ("p1", "p2")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-4000:]
    unique = set(rows_for("p1", 300)["doc_id"]) | set(rows_for("p2", 300)["doc_id"])
    ledger = ResponseLedger(backend="postgres", postgres_url=postgres_url).get_backend()
    assert ledger.count() == len(unique)
    for partition in ("p1", "p2"):
        table = pd.read_parquet(tmp_path / "data" / "doc_summaries" / f"{partition}.parquet")
        assert len(table) == 300 and (table["llm_status"] == "ok").all()
        keys = list(table["llm_request_hash"])
        assert set(ledger.get_many(keys)) == set(keys)
    # Shared rows race (both runs miss them at once); their claims make one run pay.
    assert simulator.stats()["chat_completions"] == len(unique)
    ledger.close()
    os.environ["DAGSTER_PG_URL"] = postgres_url
    try:
        instance = dg.DagsterInstance.from_config(str(home))
        runs = instance.get_runs()
        assert len(runs) == 2 and all(run.is_success for run in runs)
        instance.dispose()
    finally:
        del os.environ["DAGSTER_PG_URL"]


def test_api_key_never_stored_or_logged(
    sqlite_instance: dg.DagsterInstance,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = texts_asset([*TEXTS[:5], "bad [[sim:invalid_json]]"])
    result = _materialize(
        [source, llm_asset(make_task(), upstream=source)], resources, sqlite_instance
    )
    assert result.success
    needle = TEST_API_KEY.encode()
    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in stored)
    assert any(p.name == "ledger.sqlite" for p in stored)
    for path in stored:
        assert needle not in path.read_bytes(), f"API key found in {path}"
    for record in sqlite_instance.all_logs(result.run_id):
        assert TEST_API_KEY not in str(record)
    out, err = capfd.readouterr()
    assert TEST_API_KEY not in out and TEST_API_KEY not in err


def test_trace_follows_a_row_to_input_prompt_model_and_runs(
    sqlite_instance: dg.DagsterInstance, simulator: SimulatorServer, resources: dict[str, Any]
) -> None:
    from reviews_example.pipeline import ASSETS, INSIGHT_TASK
    from reviews_example.sample_reviews import generate_reviews

    from llm_assets.trace import format_trace, trace_row

    first = dg.materialize(
        ASSETS, partition_key="2026-11-01", resources=resources, instance=sqlite_instance
    )
    second = dg.materialize(
        ASSETS, partition_key="2026-11-01", resources=resources, instance=sqlite_instance
    )
    defs = dg.Definitions(assets=ASSETS, resources=resources)
    review = generate_reviews("2026-11-01").iloc[3]
    trace = trace_row(
        defs, sqlite_instance, "review_insights", review["review_id"], partition="2026-11-01"
    )
    assert trace.status == "ok" and trace.task_version == INSIGHT_TASK.version_for("sim-small")
    assert trace.model == "sim-small"
    assert trace.paid_by_run_id == first.run_id
    assert trace.materialized_by_run_id == second.run_id
    assert trace.materialized_by_run_status == "SUCCESS"
    assert trace.prompt is not None and review["body"] in trace.prompt[-1]["content"]
    assert trace.raw_response is not None
    assert trace.raw_response["usage"]["prompt_tokens"] == trace.input_tokens
    assert trace.output["sentiment"] in ("positive", "neutral", "negative", "mixed")
    (upstream,) = trace.upstream
    assert upstream.asset == "raw_reviews" and upstream.run_id == second.run_id
    assert upstream.input_row is not None and upstream.input_row["body"] == review["body"]
    text = format_trace(trace)
    assert first.run_id in text and review["body"] in text


def test_trace_command_line(
    simulator: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _subprocess_env(tmp_path, simulator, "unused")
    env.update(
        LLM_ASSETS_BASE_URL=simulator.base_url,
        LLM_ASSETS_DATA_DIR=str(tmp_path / "data"),
        LLM_ASSETS_LEDGER_PATH=str(tmp_path / "ledger.sqlite"),
    )
    # The partition is materialized here, with the code location's own definitions and
    # resources read from the same environment, on the instance in DAGSTER_HOME: the command
    # under test is the trace (a `dagster asset materialize` subprocess cost ~7 s of CPU more).
    from reviews_example.definitions import build_definitions

    for name in (
        "DAGSTER_HOME",
        "LLM_ASSETS_BASE_URL",
        "LLM_ASSETS_DATA_DIR",
        "LLM_ASSETS_LEDGER_PATH",
    ):
        monkeypatch.setenv(name, env[name])
    defs = build_definitions("local")
    with dg.DagsterInstance.get() as instance:
        done = dg.materialize(
            [defs.get_assets_def("raw_reviews"), defs.get_assets_def("review_insights")],
            resources=defs.resources,
            instance=instance,
            partition_key="2026-11-03",
        )
    assert done.success
    def trace(row: str) -> Finished:
        args = ["trace", "review_insights", "--partition", "2026-11-03", "--row", row]
        return run(LLM_ASSETS_MAIN, args, env=env, cwd=REPO_ROOT, logs=tmp_path / f"trace-{row}")

    shown = trace("2026-11-03-0002")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "status:           ok" in shown.stdout
    assert "[user] Product:" in shown.stdout and "paid by run:" in shown.stdout
    assert "raw_reviews partition=2026-11-03" in shown.stdout
    missing = trace("nope")
    assert missing.returncode == 2 and "no row with review_id='nope'" in missing.stderr
