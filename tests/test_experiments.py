"""Experiments: a candidate on a reproducible sample, beside the current task, before paying.

Against the simulator over real HTTP, whose answers depend on the model and the prompt, so a
candidate really disagrees. What the sample paid for is in the ledger: adopting the candidate
pays only for the rows the sample did not hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
import pytest
from pydantic import BaseModel
from reviews_example.pipeline import ASSETS

from llm_assets import BudgetExceededError, LLMTask, UserError, llm_asset
from llm_assets.__main__ import main
from llm_assets.experiments import experiment_metadata, run_experiment
from llm_assets.simulator import SimulatorServer
from tests.conftest import location_file, make_resources

pytestmark = pytest.mark.timeout(180)

DAY = "2026-11-01"
ROWS = 300


class Verdict(BaseModel):
    sentiment: Literal["positive", "neutral", "negative"]
    summary: str


class Strict(BaseModel):  # a dict field: OpenAI's strict structured outputs refuse it
    tags: dict[str, str]


@dg.asset(name="notes")
def notes() -> pd.DataFrame:
    return pd.DataFrame(
        {"note_id": [f"n{i:03d}" for i in range(ROWS)], "text": [f"note {i}" for i in range(ROWS)]}
    )


# A candidate's answer given as JSON Schema: one field kept, one new.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["calm", "angry"]}, "summary": {"type": "string"}},
    "required": ["mood", "summary"],
}

TASK = LLMTask(
    name="verdicts",
    system_prompt="Judge the note.",
    user_prompt="Note: {text}",
    output_schema=Verdict,
    id_column="note_id",
    expected_output_tokens=30,
)


def test_a_candidate_on_the_example_reports_agreement_costs_and_a_forecast(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    resources = make_resources(simulator, tmp_path)
    assert dg.materialize(
        ASSETS[:2], partition_key=DAY, resources=resources, instance=sqlite_instance
    ).success
    defs = dg.Definitions(assets=ASSETS, resources=resources)
    simulator.reset()

    outcome = run_experiment(
        defs, "review_insights", [DAY], {"B": {"model": "sim-large"}}, sample=50, seed=7
    )
    again = run_experiment(
        defs, "review_insights", [DAY], {"B": {"model": "sim-large"}}, sample=50, seed=7
    )
    (b,) = outcome.candidates
    # The current answers came from the ledger; the candidate paid for its sample once.
    assert outcome.current.rows == 50 and outcome.current.requests_sent == 0
    assert b.side.requests_sent == 50 and again.candidates[0].side.requests_sent == 0
    assert simulator.stats()["chat_completions"] == 50
    # Another model answers otherwise: agreement is measured, and below 1.
    assert 0 <= b.agreement < 1 and {f.field for f in b.fields} >= {"sentiment", "summary"}
    assert next(f for f in b.fields if f.field == "summary").similarity is not None
    assert b.side.cost_per_row > outcome.current.cost_per_row  # sim-large costs more
    # Re-materializing the day with it: the 50 sampled requests are in the ledger already.
    assert b.forecast.ledger_hits == 50 and b.forecast.requests == b.forecast.rows - 50
    low, mid, high = b.forecast_usd
    assert 0 < low <= mid <= high
    metadata = experiment_metadata(outcome)
    assert metadata["B/agreement"] == round(b.agreement, 4) and metadata["sample_rows"] == 50
    assert "B agrees" in metadata["experiment"]
    stored = pd.read_parquet(Path(outcome.uri.removeprefix("file://")))  # type: ignore[union-attr]
    assert len(stored) == 50 and {"current.sentiment", "B.sentiment"} <= set(stored.columns)
    assert outcome.table["row_id"].tolist() == again.table["row_id"].tolist()  # same seed


def test_adopting_the_candidate_pays_only_for_the_rows_the_sample_did_not_hold(
    simulator: SimulatorServer, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    resources = make_resources(simulator, tmp_path)
    current = llm_asset(TASK, upstream=notes)
    assert dg.materialize([notes, current], resources=resources, instance=sqlite_instance).success
    prompt = "A note to judge, in one word and a sentence: {text}"
    defs = dg.Definitions(assets=[notes, current], resources=resources)
    simulator.reset()
    outcome = run_experiment(defs, "verdicts", None, {"B": {"user_prompt": prompt}}, sample=50)
    assert outcome.candidates[0].side.requests_sent == 50

    # Adopt: the candidate's prompt goes into the code, and the asset is materialized again.
    adopted = llm_asset(TASK.model_copy(update={"user_prompt": prompt}), upstream=notes)
    simulator.reset()
    result = dg.materialize([notes, adopted], resources=resources, instance=sqlite_instance)
    assert result.success
    metadata = result.asset_materializations_for_node("verdicts")[0].metadata
    assert metadata["requests_sent"].value == ROWS - 50 == simulator.stats()["chat_completions"]
    assert metadata["cache_hits"].value == 50
    table = pd.read_parquet(tmp_path / "data" / "verdicts.parquet").set_index("note_id")
    sampled = outcome.table.set_index("row_id")
    for field in ("sentiment", "summary"):
        assert table.loc[sampled.index, field].tolist() == sampled[f"B.{field}"].tolist()


def test_a_bad_candidate_fails_before_any_request_with_a_sentence(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    resources = make_resources(simulator, tmp_path)
    assert dg.materialize([notes], resources=resources).success
    defs = dg.Definitions(assets=[notes, llm_asset(TASK, upstream=notes)], resources=resources)
    simulator.reset()
    mistakes = {
        "unknown override 'prompt'": {"prompt": "x"},
        "candidate B: column(s) 'author' needed": {"user_prompt": "Note: {text} by {author}"},
        "strict structured outputs would refuse": {
            "output_schema": "tests.test_experiments:Strict"
        },
        "cannot import output_schema": {"output_schema": "tests.nowhere:Model"},
        "property 'detail'": {
            "output_schema": {"type": "object", "properties": {"detail": {"type": "object"}}}
        },
    }
    for sentence, overrides in mistakes.items():
        with pytest.raises(UserError) as caught:
            run_experiment(defs, "verdicts", None, {"B": overrides}, sample=10)
        assert sentence.lower() in str(caught.value).lower(), str(caught.value)
    assert simulator.stats()["chat_completions"] == 0


def test_the_budget_caps_an_experiment_and_two_candidates_compare(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    resources = make_resources(simulator, tmp_path)
    assert dg.materialize([notes], resources=resources).success
    defs = dg.Definitions(assets=[notes, llm_asset(TASK, upstream=notes)], resources=resources)
    with pytest.raises(BudgetExceededError):
        run_experiment(
            defs, "verdicts", None, {"B": {"model": "sim-large"}}, sample=40, max_cost_usd=1e-5
        )
    outcome = run_experiment(
        defs,
        "verdicts",
        None,
        {"B": {"model": "sim-large"}, "C": {"output_schema": json.dumps(VERDICT_SCHEMA)}},
        sample=20,
        seed=3,
    )
    assert [c.label for c in outcome.candidates] == ["B", "C"]
    assert {"current.summary", "B.summary", "C.summary", "C.mood"} <= set(outcome.table.columns)
    # C's schema from JSON Schema: its answers follow it, and the shared field is compared.
    c = outcome.candidates[1]
    assert [f.field for f in c.fields] == ["summary"] and c.side.failure_rate == 0
    assert set(outcome.table["C.mood"]) <= {"calm", "angry"}


def test_the_command_line_runs_an_experiment(
    simulator: SimulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = location_file(
        simulator,
        tmp_path,
        "from tests.test_experiments import TASK, notes",
        "[notes, llm_asset(TASK, upstream=notes)]",
        "",
    )
    assert dg.materialize([notes], resources=make_resources(simulator, tmp_path)).success
    (tmp_path / "prompt.txt").write_text("Judge this note carefully: {text}")
    where = ["-f", str(code), "-d", str(Path.cwd())]
    assert (
        main(
            [
                "experiment",
                "verdicts",
                *where,
                "--sample",
                "12",
                "--set",
                "model=sim-large",
                "--set",
                f"user_prompt=@{tmp_path / 'prompt.txt'}",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["sample_rows"] == 12 and 0 <= printed["B/agreement"] < 1
    assert printed["B/forecast_requests"] == ROWS - 12
    assert main(["experiment", "verdicts", *where, "--set", "colour=red"]) == 2
    assert "unknown override 'colour'" in capsys.readouterr().err
