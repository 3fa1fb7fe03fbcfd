"""A dagster-celery worker killed mid-step (SIGKILL to its whole process group).

What a user sees: the step fails with ``CeleryWorkerLost`` naming the worker, the run fails,
the daemon's run retries (``dagster.yaml``) re-execute it from failure on the worker that
remains, and the retry pays only for the requests that were in flight when the worker died.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, ROOT_RUN_ID_TAG
from reviews_example.sample_reviews import generate_reviews

from llm_assets.simulator import SimulatorServer
from tests.celery_support import celery_cluster, new_name, step_workers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PARTITION = "2026-11-01"
CONCURRENCY = 8


@pytest.mark.timeout(600)
def test_killed_worker_fails_the_run_and_the_retry_pays_only_for_calls_in_flight(
    postgres_url: str, simulator: SimulatorServer, tmp_path: Path
) -> None:
    # ~370 requests, 8 at a time, 0.3 s each: the LLM step runs for about 15 s.
    simulator.configure(latency_ms=300)
    with celery_cluster(
        tmp_path,
        postgres_url,
        simulator.base_url,
        LLM_ASSETS_CONCURRENCY=str(CONCURRENCY),
        LLM_ASSETS_CELERY_WORKER_LOST_AFTER_S="10",
    ) as cluster:
        workers = {cluster.start_worker(new_name("w1")), cluster.start_worker(new_name("w2"))}
        cluster.start_daemon()
        # Queued until the daemon is up; the workers start meanwhile.
        cluster.dagster(
            "job", "launch", "-m", "reviews_example.definitions", "-j", "nightly_enrichment",
            "--tags", json.dumps({"dagster/partition": PARTITION}),
        )  # fmt: skip
        cluster.wait_for_workers()
        instance = cluster.instance
        (run,) = instance.get_runs()

        def insights_worker_mid_step() -> str | None:
            worker = step_workers(instance, run.run_id).get("review_insights")
            return worker if worker and simulator.stats()["chat_completions"] >= 40 else None

        victim = cluster.wait_until(
            "review_insights to be half-way", insights_worker_mid_step, 240, interval_s=0.2
        )
        cluster.kill_worker(victim)
        paid_before_kill = simulator.stats()["chat_completions"]
        (survivor,) = workers - {victim}

        def retry_finished() -> dg.DagsterRun | None:
            for other in instance.get_runs():
                if other.tags.get(ROOT_RUN_ID_TAG) == run.run_id and other.is_finished:
                    return other
            return None

        retry = cluster.wait_until("the daemon's retry to finish", retry_finished, 300, 2)
        failed = instance.get_run_by_id(run.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        failure_text = "\n".join(
            str(record.dagster_event.event_specific_data)
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            if record.dagster_event is not None
        )
        assert "CeleryWorkerLost" in failure_text and victim in failure_text, failure_text

        assert retry.is_success, cluster.tail_logs()
        assert retry.tags[PARENT_RUN_ID_TAG] == run.run_id
        # From failure: the LLM step and the digest again, on the worker that remains.
        assert step_workers(instance, retry.run_id) == {
            "review_insights": survivor,
            "review_insights_reviewed": survivor,
            "daily_digest": survivor,
        }

        reviews = generate_reviews(PARTITION)
        table = pd.read_parquet(cluster.data_dir / "review_insights" / f"{PARTITION}.parquet")
        assert sorted(table["review_id"]) == sorted(reviews["review_id"])
        assert table["review_id"].is_unique and (table["llm_status"] == "ok").all()
        # Answers paid by the killed run were kept by the ledger, not bought again.
        assert (table["llm_paid_by_run_id"] == run.run_id).sum() >= paid_before_kill - CONCURRENCY
        digest_requests = 1
        assert (
            simulator.stats()["chat_completions"] <= len(reviews) + CONCURRENCY + digest_requests
        )
