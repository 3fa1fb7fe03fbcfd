"""The example pipeline on two dagster-celery workers over Redis, on a Postgres instance.

The backfill goes through the real path a user takes: ``dagster job backfill`` submits one run
per partition, the daemon dequeues them, each run's steps are Celery tasks that the two worker
subprocesses take from the broker.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from llm_assets.celery_executor import CELERY_SETTINGS
from llm_assets.example.sample_reviews import generate_reviews
from llm_assets.simulator import SimulatorServer
from tests.celery_support import PARTITIONS, celery_cluster, new_name, step_workers
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STEPS = {"raw_reviews", "review_insights", "daily_digest"}


def test_celery_yaml_matches_the_executor_settings() -> None:
    config = yaml.safe_load((REPO_ROOT / "celery.yaml").read_text())["execution"]["config"]
    assert config["config_source"] == CELERY_SETTINGS
    assert config["broker"] == {"env": "LLM_ASSETS_CELERY_BROKER"}


@pytest.mark.timeout(420)
def test_backfill_of_four_partitions_spreads_over_two_workers(
    postgres_url: str, simulator: SimulatorServer, tmp_path: Path
) -> None:
    # Enough latency that a step holds its worker while the next runs' steps are queued.
    simulator.configure(latency_ms=40)
    with celery_cluster(tmp_path, postgres_url, simulator.base_url) as cluster:
        workers = {cluster.start_worker(new_name("w1")), cluster.start_worker(new_name("w2"))}
        cluster.start_daemon()
        cluster.wait_for_workers()
        cluster.dagster(
            "job", "backfill", "-m", "llm_assets.definitions", "-j", "nightly_enrichment",
            "--partitions", ",".join(PARTITIONS), "--noprompt",
        )  # fmt: skip
        instance = cluster.instance

        def finished() -> list[dg.DagsterRun] | None:
            runs = instance.get_runs()
            done = [r for r in runs if r.is_finished]
            return runs if len(runs) == len(PARTITIONS) == len(done) else None

        runs = cluster.wait_until("four finished runs", finished, timeout_s=300, interval_s=2)
        assert all(r.is_success for r in runs), cluster.tail_logs()

        seen_workers: set[str] = set()
        for run in runs:
            by_step = step_workers(instance, run.run_id)
            assert set(by_step) == STEPS, by_step
            seen_workers |= set(by_step.values())
        assert seen_workers == workers

        rows = 0
        for partition in PARTITIONS:
            reviews = generate_reviews(partition)
            table = pd.read_parquet(cluster.data_dir / "review_insights" / f"{partition}.parquet")
            assert sorted(table["review_id"]) == sorted(reviews["review_id"])
            assert table["review_id"].is_unique and (table["llm_status"] == "ok").all()
            digest = pd.read_parquet(cluster.data_dir / "daily_digest" / f"{partition}.parquet")
            assert digest["day"].tolist() == [partition]
            rows += len(reviews) + 1
        assert 0 < simulator.stats()["chat_completions"] <= rows
