"""An experiment's overhead over sending its candidate's requests plainly.

An ``llm_asset`` of ``ROWS`` rows is materialized first, so the ledger holds the current
answers. Then, side by side against one ``SimulatorProcess`` with provider-like latency
(lognormal, mean ``LATENCY_MS``): *plain* renders the candidate's ``ROWS`` requests and sends
them with ``LLMResource.run_requests``; *experiment* is ``run_experiment`` on all ``ROWS``
rows with the same candidate on a fresh ledger (sampling, the current side answered by the
ledger, the candidate's requests sent, claimed and recorded, the comparison, the forecast and
the Parquet file). ``experiment_overhead_pct`` is the difference over the plain time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from llm_assets import LLMResource, LLMTask, ParquetIOManager, ResponseLedger, llm_asset
from llm_assets.experiments import candidate_task, run_experiment
from llm_assets.rendering import plan_rows
from llm_assets.simulator import SimulatorConfig, SimulatorProcess

ROWS = 500
LATENCY_MS = 200.0
CONCURRENCY = 16
CANDIDATE = {"model": "sim-large"}


class Verdict(BaseModel):
    sentiment: str
    summary: str


TASK = LLMTask(
    name="bench_verdicts",
    system_prompt="Judge the note.",
    user_prompt="Note: {text}",
    output_schema=Verdict,
    id_column="note_id",
    model="sim-small",
)


@dg.asset(name="bench_notes")
def notes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "note_id": [f"n{i}" for i in range(ROWS)],
            "text": [f"note {i} on the battery" for i in range(ROWS)],
        }
    )


def run() -> dict[str, float]:
    """Seconds of the plain send and of the experiment, and the overhead in percent."""
    config = SimulatorConfig(latency_ms=LATENCY_MS, latency_jitter=0.5)
    with SimulatorProcess(config) as sim, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        llm = LLMResource(
            base_url=sim.base_url,
            api_key="sk-bench",
            model="sim-small",
            max_concurrency=CONCURRENCY,
        )
        io = ParquetIOManager(base_dir=str(base / "data"))
        asset = llm_asset(TASK, upstream=notes)
        first = {
            "llm": llm,
            "io_manager": io,
            "ledger": ResponseLedger(sqlite_path=str(base / "ledger.sqlite")),
        }
        assert dg.materialize([notes, asset], resources=first).success

        candidate = candidate_task(TASK, CANDIDATE)
        frame = notes()
        _, requests = plan_rows(candidate, {None: frame}, "sim-large", None)
        started = time.perf_counter()
        stats = llm.run_requests(list(requests.values()), lambda result: None)
        plain_s = time.perf_counter() - started
        assert stats.ok == ROWS

        # A fresh ledger holding only the current answers: the candidate's are paid again.
        fresh = ResponseLedger(sqlite_path=str(base / "ledger2.sqlite"))
        again = {**first, "ledger": fresh}
        assert dg.materialize([notes, asset], resources=again).success
        defs = dg.Definitions(assets=[notes, asset], resources=again)
        started = time.perf_counter()
        outcome = run_experiment(defs, "bench_verdicts", None, {"B": CANDIDATE}, sample=ROWS)
        experiment_s = time.perf_counter() - started
        assert outcome.candidates[0].side.requests_sent == ROWS
    return {
        "experiment_plain_send_s": plain_s,
        "experiment_s": experiment_s,
        "experiment_overhead_pct": (experiment_s - plain_s) / plain_s * 100,
    }
