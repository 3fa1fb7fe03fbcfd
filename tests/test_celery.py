"""The example pipeline on two dagster-celery workers over Redis, on a Postgres instance.

Two runs, each a range of two days (the single-run backfill a UI backfill of these assets
makes), are started at once with ``dagster job execute``; every step is a Celery task that one
of the two worker subprocesses takes from the broker. Each worker has one process and takes a
task only when it is free, so two runs working at the same time must use both workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reviews_example.sample_reviews import generate_reviews

from llm_assets.celery_executor import CELERY_SETTINGS
from llm_assets.simulator import SimulatorServer
from tests.celery_support import (
    PARTITIONS,
    RANGE_END,
    RANGE_START,
    celery_cluster,
    new_name,
    step_workers,
)
from tests.conftest import REPO_ROOT

STEPS = {"raw_reviews", "review_insights", "review_insights_reviewed", "daily_digest"}


def test_celery_yaml_matches_the_executor_settings() -> None:
    config = yaml.safe_load((REPO_ROOT / "celery.yaml").read_text())["execution"]["config"]
    assert config["config_source"] == CELERY_SETTINGS
    assert config["broker"] == {"env": "LLM_ASSETS_CELERY_BROKER"}
    assert config["backend"] == {"env": "LLM_ASSETS_CELERY_BACKEND"}


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_four_partitions_spread_over_two_workers(
    postgres_url: str, simulator: SimulatorServer, tmp_path: Path
) -> None:
    # Enough latency that each run's LLM step holds a worker for a few seconds.
    simulator.configure(latency_ms=40)
    with celery_cluster(tmp_path, postgres_url, simulator.base_url) as cluster:
        workers = {cluster.start_worker(new_name("w1")), cluster.start_worker(new_name("w2"))}
        runs = [
            cluster.start_dagster(
                "job", "execute", "-m", "reviews_example.definitions", "-j", "nightly_enrichment",
                "--tags", json.dumps({RANGE_START: days[0], RANGE_END: days[-1]}),
                log_name=f"run-{days[0]}",
            )
            for days in (PARTITIONS[:2], PARTITIONS[2:])
        ]
        cluster.wait_for_workers()
        for proc in runs:
            assert proc.wait(timeout=300) == 0, cluster.tail_logs()

        instance = cluster.instance
        finished = instance.get_runs()
        assert len(finished) == 2 and all(r.is_success for r in finished)
        seen_workers: set[str] = set()
        for run in finished:
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
