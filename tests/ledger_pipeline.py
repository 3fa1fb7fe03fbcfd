"""A small code location for tests that run Dagster in other processes (CLI, crash tests).

Resources come from environment variables so a test can point a subprocess at its own
simulator, ledger and folders:

- ``TEST_SIM_URL``: simulator base URL (``.../v1``)
- ``TEST_LEDGER``: ``sqlite:<path>`` or a ``postgresql+psycopg2://`` URL
- ``TEST_DATA_DIR``: Parquet root
- ``TEST_ROWS``: rows per partition (default 50)
- ``TEST_CONCURRENCY``: requests in flight (default 8)
- ``TEST_API_KEY``: the key sent to the simulator
- ``TEST_CLAIM_LEASE_S`` / ``TEST_CLAIM_POLL_S``: the ledger's claim lease and poll interval
- ``TEST_BARRIER_DIR`` / ``TEST_BARRIER_COUNT``: ``main`` waits until that many processes have
  reached it (each leaves a file in the directory), so racing runs start together

Tests run ``main`` as a program of its own with ``tests.forked``, or the code location with the
``dagster`` command line.
"""

import os
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from llm_assets import LLMTask, llm_asset
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager

PARTS = dg.StaticPartitionsDefinition(["p1", "p2"])


class Summary(BaseModel):
    summary: str
    keywords: list[str]


TASK = LLMTask(
    name="doc_summaries",
    system_prompt="Summarise the document.",
    user_prompt="Document {doc_id}: {text}",
    output_schema=Summary,
    id_column="doc_id",
    max_output_tokens=100,
)


def rows_for(partition: str, count: int) -> pd.DataFrame:
    """Deterministic documents; half of each partition's rows are shared with the other."""
    docs = []
    for i in range(count):
        shared = i % 2 == 0
        doc_id = f"shared-{i}" if shared else f"{partition}-{i}"
        docs.append({"doc_id": doc_id, "text": f"document {doc_id} about topic {i % 17}"})
    return pd.DataFrame(docs)


@dg.asset(partitions_def=PARTS)
def documents(context: dg.AssetExecutionContext) -> pd.DataFrame:
    """The partition's documents."""
    return rows_for(context.partition_key, int(os.environ.get("TEST_ROWS", "50")))


doc_summaries = llm_asset(TASK, upstream=documents)


def _ledger() -> ResponseLedger:
    spec = os.environ.get("TEST_LEDGER", "sqlite:ledger.sqlite")
    claims = {
        "claim_lease_s": float(os.environ.get("TEST_CLAIM_LEASE_S", "30")),
        "claim_poll_s": float(os.environ.get("TEST_CLAIM_POLL_S", "1")),
    }
    if spec.startswith("sqlite:"):
        return ResponseLedger(backend="sqlite", sqlite_path=spec.removeprefix("sqlite:"), **claims)
    return ResponseLedger(backend="postgres", postgres_url=spec, **claims)


def _wait_at_barrier() -> None:
    folder = os.environ.get("TEST_BARRIER_DIR")
    if not folder:
        return
    count = int(os.environ.get("TEST_BARRIER_COUNT", "2"))
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 180
    while len(list(Path(folder).iterdir())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(Path(folder).iterdir()))} of {count} arrived")
        time.sleep(0.02)


def resources() -> dict[str, object]:
    """Resources from the environment."""
    return {
        "llm": LLMResource(
            base_url=os.environ.get("TEST_SIM_URL", "http://127.0.0.1:8765/v1"),
            api_key=os.environ.get("TEST_API_KEY", "sk-test"),
            model="sim-small",
            max_concurrency=int(os.environ.get("TEST_CONCURRENCY", "8")),
            retry_backoff_s=0.01,
        ),
        "ledger": _ledger(),
        "io_manager": ParquetIOManager(base_dir=os.environ.get("TEST_DATA_DIR", "data")),
    }


# A run is one process (`dagster asset materialize` runs its steps in it): the processes the
# tests race are the runs, and a process per step would only import everything again.
defs = dg.Definitions(
    assets=[documents, doc_summaries], resources=resources(), executor=dg.in_process_executor
)


def main(partition: str) -> int:
    """Materializes one partition on the instance in ``$DAGSTER_HOME``."""
    _wait_at_barrier()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [documents, doc_summaries],
            partition_key=partition,
            resources=resources(),
            instance=instance,
            raise_on_error=False,
        )
    return 0 if result.success else 1


#: ``main`` for ``tests.forked``: ``python -m tests.ledger_pipeline PARTITION``.
MAIN = f"{__name__}:main"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
