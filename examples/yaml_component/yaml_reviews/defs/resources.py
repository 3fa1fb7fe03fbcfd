"""The resources every LLM asset of the project uses: endpoint, ledger, Parquet storage.

By default the offline simulator (``python -m llm_assets.simulator --port 8765``) and a SQLite
ledger; set ``LLM_ASSETS_BASE_URL`` and ``OPENAI_API_KEY`` for a real endpoint.
"""

import os

import dagster as dg

from llm_assets import LLMResource, ParquetIOManager, ResponseLedger


@dg.definitions
def resources() -> dg.Definitions:
    """``llm``, ``ledger`` and ``io_manager``, read from the environment at load time."""
    base_url = os.environ.get("LLM_ASSETS_BASE_URL", "http://127.0.0.1:8765/v1")
    return dg.Definitions(
        resources={
            "llm": LLMResource(
                base_url=base_url,
                # A key is required only off this machine; the simulator accepts any.
                api_key=dg.EnvVar("OPENAI_API_KEY") if "OPENAI_API_KEY" in os.environ else None,
                model=os.environ.get("LLM_ASSETS_MODEL", "sim-small"),
            ),
            "ledger": ResponseLedger(),
            "io_manager": ParquetIOManager(base_dir=os.environ.get("LLM_ASSETS_DATA_DIR", "data")),
        }
    )
