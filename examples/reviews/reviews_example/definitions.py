"""The code location: the example pipeline with resources chosen per deployment.

``LLM_ASSETS_ENV`` picks the resource set: ``local`` (default) talks to the offline simulator
and keeps the ledger in SQLite; ``prod`` talks to OpenAI (or any compatible endpoint set by
``LLM_ASSETS_BASE_URL``) and keeps the ledger in the Postgres database of the Dagster instance.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from llm_assets.experiments import estimate_job, experiment_job
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.versions import resolve_model_versions

from reviews_example.inbox import INBOX_ASSETS, INBOX_SENSORS
from reviews_example.pipeline import (
    ASSET_EXECUTOR,
    ASSETS,
    insight_review_sensor,
    nightly_enrichment_job,
    nightly_enrichment_schedule,
    review_batches_sensor,
)
from reviews_example.research import RESEARCH_ASSETS, review_research_job
from reviews_example.spend import ALERT_SENSORS, SPEND_ASSETS, llm_spend_refresh_job

SIMULATOR_URL = "http://127.0.0.1:8765/v1"


def _tables() -> ParquetIOManager:
    """Parquet under ``LLM_ASSETS_DATA_DIR`` (a folder or s3://, gs://, file:// URI)."""
    return ParquetIOManager(
        base_dir=os.environ.get("LLM_ASSETS_DATA_DIR", "data"),
        # The AWS SDKs' own variable for an S3-compatible server (MinIO, Ceph, R2).
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None,
    )


def local_resources() -> dict[str, Any]:
    """Simulator endpoint, SQLite ledger, Parquet under ``LLM_ASSETS_DATA_DIR``."""
    home = os.environ.get("DAGSTER_HOME") or ".dagster_home"
    return {
        "llm": LLMResource(
            base_url=os.environ.get("LLM_ASSETS_BASE_URL", SIMULATOR_URL),
            # The simulator accepts any key; this one is not a secret.
            api_key="sk-simulator-local",
            model=os.environ.get("LLM_ASSETS_MODEL", "sim-small"),
            max_concurrency=int(os.environ.get("LLM_ASSETS_CONCURRENCY", "32")),
            # Steps in separate processes on this host share one limit per key.
            rate_limit_store="sqlite",
        ),
        "ledger": ResponseLedger(
            backend="sqlite",
            sqlite_path=os.environ.get(
                "LLM_ASSETS_LEDGER_PATH", os.path.join(home, "ledger.sqlite")
            ),
        ),
        "io_manager": _tables(),
    }


def prod_resources() -> dict[str, Any]:
    """OpenAI (or ``LLM_ASSETS_BASE_URL``), Postgres ledger on ``DAGSTER_PG_URL``."""
    return {
        "llm": LLMResource(
            base_url=os.environ.get("LLM_ASSETS_BASE_URL", "https://api.openai.com/v1"),
            api_key=dg.EnvVar("OPENAI_API_KEY"),
            model=os.environ.get("LLM_ASSETS_MODEL", "gpt-4o-mini"),
            max_concurrency=int(os.environ.get("LLM_ASSETS_CONCURRENCY", "32")),
            # Every run and step on every node shares one limit per key, kept in Postgres.
            rate_limit_store="postgres",
            rate_limit_postgres_url=dg.EnvVar("DAGSTER_PG_URL"),
        ),
        "ledger": ResponseLedger(backend="postgres", postgres_url=dg.EnvVar("DAGSTER_PG_URL")),
        "io_manager": _tables(),
    }


RESOURCES_BY_ENV = {"local": local_resources, "prod": prod_resources}


def build_definitions(env: str | None = None) -> dg.Definitions:
    """The example pipeline's ``Definitions`` for a deployment.

    Args:
        env: ``local`` or ``prod``; defaults to ``LLM_ASSETS_ENV`` or ``local``.

    Returns:
        Assets, job, schedule, sensors and resources.

    Examples:
        >>> defs = build_definitions("local")
        >>> defs.get_job_def("nightly_enrichment").name
        'nightly_enrichment'
    """
    env = env or os.environ.get("LLM_ASSETS_ENV", "local")
    if env not in RESOURCES_BY_ENV:
        raise ValueError(f"LLM_ASSETS_ENV must be one of {sorted(RESOURCES_BY_ENV)}, not {env!r}")
    return resolve_model_versions(
        dg.Definitions(
            assets=[*ASSETS, *INBOX_ASSETS, *RESEARCH_ASSETS, *SPEND_ASSETS],
            jobs=[
                nightly_enrichment_job,
                review_research_job,
                llm_spend_refresh_job,
                # From the launchpad: try a change on a sample; forecast a run, sending nothing.
                experiment_job(),
                estimate_job(),
            ],
            schedules=[nightly_enrichment_schedule],
            sensors=[*INBOX_SENSORS, review_batches_sensor, insight_review_sensor, *ALERT_SENSORS],
            resources=RESOURCES_BY_ENV[env](),
            # Also for what the UI launches outside the jobs (an asset's Materialize button).
            executor=ASSET_EXECUTOR,
        )
    )


defs = build_definitions()
