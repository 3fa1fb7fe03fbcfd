"""Deciding a large review and launching the reviewed run; the review page's list view.

A gate of ``ROWS`` rows with every row flagged (``sample_rate=1.0``) is materialized against
the in-process simulator. Then, measured: approving every pending row through ``ReviewDesk``
(each decision its own checked, append-only transaction), the review sensor's tick that finds
the round decided, and the reviewed asset's run over all rows; and the page's list view of a
partition with ``ROWS`` pending rows (first page and a middle page, 50 rows each, rendered by
the real Starlette app).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import BaseModel
from starlette.testclient import TestClient

from llm_assets import (
    LLMResource,
    LLMTask,
    ParquetIOManager,
    ResponseLedger,
    ReviewDesk,
    ReviewPolicy,
    llm_asset,
    reviewed_asset,
)
from llm_assets.review.page import review_app
from llm_assets.sensors import review_sensor
from llm_assets.simulator import SimulatorServer

ROWS = 10_000


class Label(BaseModel):
    label: str


TASK = LLMTask(
    name="bench_labels",
    system_prompt="Label the note.",
    user_prompt="Note: {text}",
    output_schema=Label,
    id_column="note_id",
    model="sim-small",
)


@dg.asset(name="bench_label_notes")
def notes() -> pd.DataFrame:
    return pd.DataFrame(
        {"note_id": [f"n{i:05d}" for i in range(ROWS)], "text": [f"note {i}" for i in range(ROWS)]}
    )


def run() -> dict[str, float]:
    """Seconds to decide ``ROWS`` rows and launch the reviewed run; the list view's seconds."""
    gate = llm_asset(TASK, upstream=notes, review=ReviewPolicy(sample_rate=1.0))
    reviewed = reviewed_asset(gate)
    with SimulatorServer() as sim, tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(
        temp_dir=tmp
    ) as instance:  # fmt: skip
        resources = {
            "llm": LLMResource(base_url=sim.base_url, api_key="sk-bench", max_concurrency=64),
            "ledger": ResponseLedger(sqlite_path=str(Path(tmp) / "ledger.sqlite")),
            "io_manager": ParquetIOManager(base_dir=str(Path(tmp) / "data")),
        }
        assets = [notes, gate, reviewed]
        defs = dg.Definitions(assets=assets, resources=resources)
        dg.materialize([notes, gate], resources=resources, instance=instance)
        desk = ReviewDesk.of(defs)
        client = TestClient(review_app(desk, token=None))
        timings = {}
        for name, url in (
            ("first", "/review/bench_labels/-"),
            ("middle", f"/review/bench_labels/-?page={ROWS // 100}"),
        ):
            started = time.perf_counter()
            page = client.get(url)
            timings[name] = time.perf_counter() - started
            assert page.status_code == 200 and page.text.count('class="card"') == 50

        started = time.perf_counter()
        pending = desk.items("bench_labels", None, limit=ROWS + 1)
        for item in pending:
            desk.approve(item.item_id, reviewer="bench")
        decided = time.perf_counter() - started
        sensor = review_sensor([reviewed])
        with dg.build_sensor_context(
            instance=instance, resources=resources, definitions=defs
        ) as ctx:
            requests = sensor.evaluate_tick(ctx).run_requests or []
        assert len(requests) == 1
        result = dg.materialize(
            assets, selection=[k.to_user_string() for k in reviewed.keys],
            resources=resources, instance=instance,
        )  # fmt: skip
        launched = time.perf_counter() - started
        out = resources["io_manager"].find_table(dg.AssetKey("bench_labels_reviewed"), None)
        assert result.success and out is not None and len(out) == ROWS
    return {
        "review_rows": float(len(pending)),
        "review_decide_all_s": decided,
        "review_decide_and_reviewed_run_s": launched,
        "review_page_first_page_s": timings["first"],
        "review_page_middle_page_s": timings["middle"],
    }
