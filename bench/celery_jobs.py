"""The code location of ``bench_celery``: jobs the Celery benchmark runs on its workers.

``two_llm_steps``: two independent LLM steps (``answers_a``, ``answers_b``) of ``BENCH_ROWS``
rows each in one run, so with two workers they run side by side and with one worker in turn.
``noop_chain_celery`` / ``noop_chain_multiprocess``: a chain of steps that do nothing, to time
what each executor adds per step. Resources come from the environment the benchmark sets.
"""

import os

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from llm_assets.celery_executor import celery_config, watched_celery_executor
from llm_assets.factory import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.task import LLMTask

NOOP_STEPS = 6


class Label(BaseModel):
    label: str


class ItemsConfig(dg.Config):
    salt: str = ""
    rows: int = 600


def _items(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def items(config: ItemsConfig) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "item_id": range(config.rows),
                "text": [
                    f"{config.salt} {name} {i}: battery life is great but the screen"
                    for i in range(config.rows)
                ],
            }
        )

    return items


def _answers(name: str, upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    task = LLMTask(
        name=name, user_prompt="Label: {text}", output_schema=Label, id_column="item_id",
        max_output_tokens=20,
    )  # fmt: skip
    return llm_asset(task, upstream=upstream)


items_a, items_b = _items("items_a"), _items("items_b")
answers_a, answers_b = _answers("answers_a", items_a), _answers("answers_b", items_b)


def _noop_chain(prefix: str) -> list[dg.AssetsDefinition]:
    chain: list[dg.AssetsDefinition] = []
    for i in range(NOOP_STEPS):

        @dg.asset(name=f"{prefix}_{i}", deps=chain[-1:])
        def noop() -> dg.MaterializeResult:
            return dg.MaterializeResult()

        chain.append(noop)
    return chain


celery = watched_celery_executor.configured(celery_config(), name="celery")
noop_celery, noop_mp = _noop_chain("noop_celery"), _noop_chain("noop_mp")

defs = dg.Definitions(
    assets=[items_a, items_b, answers_a, answers_b, *noop_celery, *noop_mp],
    jobs=[
        dg.define_asset_job(
            "two_llm_steps",
            selection=dg.AssetSelection.assets(items_a, items_b, answers_a, answers_b),
            executor_def=celery,
        ),
        dg.define_asset_job(
            "noop_chain_celery", selection=dg.AssetSelection.assets(*noop_celery),
            executor_def=celery,
        ),
        dg.define_asset_job(
            "noop_chain_multiprocess", selection=dg.AssetSelection.assets(*noop_mp)
        ),
    ],
    resources={
        "llm": LLMResource(
            base_url=os.environ.get("LLM_ASSETS_BASE_URL", "http://127.0.0.1:8765/v1"),
            api_key="sk-bench-celery",
            model="sim-small",
            max_concurrency=int(os.environ.get("LLM_ASSETS_CONCURRENCY", "32")),
            rate_limit_store="postgres",
            rate_limit_postgres_url=dg.EnvVar("DAGSTER_PG_URL"),
        ),
        "ledger": ResponseLedger(backend="postgres", postgres_url=dg.EnvVar("DAGSTER_PG_URL")),
        "io_manager": ParquetIOManager(base_dir=os.environ.get("LLM_ASSETS_DATA_DIR", "data")),
    },
)
