"""Bytes and broken Unicode in upstream cells: decoded, or rejected with row, column and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets import llm_asset
from llm_assets.resources.ledger import ResponseLedger
from tests.test_llm_asset import REGIONS, make_task


def test_bytes_are_decoded_and_bad_text_fails_only_its_row(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any], tmp_path: Path
) -> None:
    # Parquet cannot hold the broken text itself, so the upstream table stays in memory.
    @dg.asset(name="texts", partitions_def=REGIONS, io_manager_key="memory")
    def texts() -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": ["utf8-bytes", "latin1-bytes", "surrogate", "plain"],
                "text": [
                    "café au lait".encode(),
                    "caf\xe9 noir".encode("latin-1"),
                    "caf\udce9 cr\udce8me",
                    "just fine",
                ],
            }
        )

    result = dg.materialize(
        [texts, llm_asset(make_task(), upstream=texts)],
        partition_key="eu",
        resources={**resources, "memory": dg.InMemoryIOManager()},
        instance=sqlite_instance,
    )
    assert result.success
    table = pd.read_parquet(tmp_path / "data" / "label" / "eu.parquet").set_index("id")
    assert table.loc["utf8-bytes", "llm_status"] == "ok"
    assert table.loc["plain", "llm_status"] == "ok"
    ledger: ResponseLedger = resources["ledger"]
    entry = ledger.get(str(table.loc["utf8-bytes", "llm_request_hash"]))
    assert entry is not None
    sent = entry.request["messages"][-1]["content"]
    assert "café au lait" in sent and "b'" not in sent

    for row, problem in (("latin1-bytes", "not UTF-8"), ("surrogate", "not valid Unicode")):
        assert table.loc[row, "llm_status"] == "failed"
        assert table.loc[row, "llm_error_class"] == "bad_text"
        error = str(table.loc[row, "llm_error"])
        assert repr(row) in error and "column 'text'" in error and problem in error
    assert "decode" in str(table.loc["latin1-bytes", "llm_error"])
    quarantine = pd.read_parquet(tmp_path / "data" / "label_quarantine" / "eu.parquet")
    assert sorted(quarantine["id"]) == ["latin1-bytes", "surrogate"]
