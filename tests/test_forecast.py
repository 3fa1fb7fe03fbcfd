"""Forecasts before a run: what materializing partitions would send and cost, sending nothing.

Held against what the example's runs then record: the forecast's dollars are within 15% of
the partitions' ``cost_usd``, its requests are exactly those sent, and the simulator sees no
request while forecasting.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from reviews_example.pipeline import ASSETS, raw_reviews
from reviews_example.sample_reviews import generate_reviews

from llm_assets import forecast_partitions
from llm_assets.__main__ import main
from llm_assets.simulator import SimulatorServer
from tests.conftest import location_file, make_resources

pytestmark = pytest.mark.timeout(180)

TAUGHT, DAYS = "2026-11-01", ["2026-11-02", "2026-11-03"]


def _cost(instance: dg.DagsterInstance, day: str) -> tuple[float, int]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("review_insights"), asset_partitions=[day]),
        limit=1,
    ).records
    event = records[0].asset_materialization
    assert event is not None
    return float(event.metadata["cost_usd"].value), int(event.metadata["requests_sent"].value)  # type: ignore[arg-type]


def test_the_forecast_is_within_15_percent_of_what_the_runs_record(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    resources = make_resources(simulator, tmp_path)
    defs = dg.Definitions(assets=ASSETS, resources=resources)
    # One day teaches the ledger how long this asset's answers are.
    run = dg.materialize(
        ASSETS, partition_key=TAUGHT, resources=resources, instance=sqlite_instance
    )
    assert run.success
    for day in DAYS:
        upstream = dg.materialize([raw_reviews], partition_key=day, resources=resources)
        assert upstream.success
    simulator.reset()

    forecast = forecast_partitions(defs, "review_insights", DAYS)
    assert simulator.stats()["chat_completions"] == 0  # nothing sent
    rows = sum(len(generate_reviews(day)) for day in DAYS)
    assert forecast.rows == rows
    # A review repeating one already answered is a ledger hit; identical rows are asked once.
    unique = forecast.ledger_hits + forecast.requests
    assert unique <= rows and forecast.requests > 0.9 * rows
    assert "newest answers in the ledger" in forecast.output_tokens_source
    assert forecast.batch_usd == pytest.approx(forecast.online_usd * 0.5)
    assert forecast.minutes_at_limit is None  # no limit stated or learned yet
    assert forecast.priced and forecast.input_tokens > 0

    for day in DAYS:
        insights = dg.materialize(
            ASSETS[:2],
            selection=[ASSETS[1]],
            partition_key=day,
            resources=resources,
            instance=sqlite_instance,
        )
        assert insights.success
    costs = [_cost(sqlite_instance, day) for day in DAYS]
    recorded = sum(cost for cost, _ in costs)
    assert sum(sent for _, sent in costs) == forecast.requests
    assert simulator.stats()["chat_completions"] == forecast.requests
    assert abs(forecast.online_usd - recorded) <= 0.15 * recorded, (forecast.online_usd, recorded)

    # Forecast again: the ledger answers everything now, so nothing would be paid.
    again = forecast_partitions(defs, "review_insights", DAYS)
    assert (again.requests, again.ledger_hits, again.online_usd) == (0, unique, 0.0)


def test_the_command_line_forecasts_and_says_what_is_wrong(
    simulator: SimulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = location_file(
        simulator,
        tmp_path,
        "from reviews_example.pipeline import ASSETS",
        "ASSETS",
        "rpm_limit=600, tpm_limit=200_000",
    )
    resources = make_resources(simulator, tmp_path)
    for day in DAYS:
        assert dg.materialize([raw_reviews], partition_key=day, resources=resources).success
    simulator.reset()
    where = ["-f", str(code)]

    assert (
        main(
            [
                "estimate",
                "review_insights",
                *where,
                "--partition-range",
                "2026-11-02...2026-11-03",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    rows = sum(len(generate_reviews(day)) for day in DAYS)
    requests = printed["requests"]
    assert printed["partitions"] == DAYS and printed["rows"] == rows and requests > 0.9 * rows
    # No history yet: the task's expected_output_tokens (40) prices each answer.
    assert printed["output_tokens"] == 40 * requests
    # 600 requests a minute bound the time (the tokens would take less).
    assert printed["minutes_at_limit"] == pytest.approx(requests / 600)
    assert simulator.stats()["chat_completions"] == 0

    assert main(["estimate", "review_insights", *where, "--partition", "2026-11-02"]) == 0
    text = capsys.readouterr().out
    assert "requests to send" in text and "online" in text and "by batch" in text

    mistakes = {
        ("raw_reviews", "--partition", "2026-11-02"): "not an llm_asset table",
        ("review_insights", "--partition", "2026-11-05"): "materialize it first",
        ("review_insights", "--partition", "1999-01-01"): "has no partition 1999-01-01",
        ("review_insights", "--partition-range", "2026-11-02"): "takes FIRST...LAST",
    }
    for arguments, sentence in mistakes.items():
        assert main(["estimate", *arguments, *where]) == 2
        assert sentence in capsys.readouterr().err
    assert simulator.stats()["chat_completions"] == 0


def test_the_asset_description_says_what_a_row_costs_before_launching() -> None:
    from reviews_example.definitions import defs
    from reviews_example.pipeline import INSIGHT_TASK

    from llm_assets.describe import before_launch

    key = dg.AssetKey("review_insights")
    description = defs.resolve_assets_def(key).specs_by_key[key].description or ""
    llm = defs.resources["llm"]  # type: ignore[index]
    expected = before_launch(INSIGHT_TASK, "sim-small", llm.price_book, "review_insights")
    assert description.endswith(expected)
    assert "a row costs about $" in expected and "per 1,000 rows" in expected
    assert "python -m llm_assets estimate review_insights --partition <key>" in expected
