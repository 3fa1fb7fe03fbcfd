"""The LLM failure sensor reports the asset, partition, error class and the run's spend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster._core.events import DagsterEventType
from pydantic import BaseModel, Field

from llm_assets import LLMTask, llm_asset
from llm_assets.sensors.alerts import LLMFailureAlert, SlackWebhook, llm_failure_sensor
from llm_assets.simulator import SimulatorServer
from tests.conftest import make_resources


class Reply(BaseModel):
    """A long answer: its cost is far above the estimate made with one output token."""

    reply: str = Field(min_length=400)


REGIONS = dg.StaticPartitionsDefinition(["eu", "us"])
ROWS = {"eu": 10, "us": 100}


@dg.asset(name="tickets", partitions_def=REGIONS)
def tickets(context) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    count = ROWS[context.partition_key]
    return pd.DataFrame(
        {"id": range(count), "text": [f"ticket {i} about a refund" for i in range(count)]}
    )


@dg.asset(name="broken_tickets", partitions_def=REGIONS)
def broken_tickets() -> pd.DataFrame:
    raise RuntimeError("the export is missing")


TASK = LLMTask(
    name="ticket_labels",
    user_prompt="Text: {text}",
    output_schema=Reply,
    id_column="id",
    # A low estimate lets the step start; the actual answers then run into the budget.
    expected_output_tokens=1,
)
LABELS = llm_asset(TASK, upstream=tickets)
BROKEN = llm_asset(TASK.model_copy(update={"name": "broken_labels"}), upstream=broken_tickets)


def _alerts_for(
    sensor: dg.SensorDefinition,
    result: dg.ExecuteInProcessResult,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
) -> None:
    """Evaluates ``sensor`` on the failed run of ``result``, as the daemon would."""
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    (record,) = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.RUN_FAILURE
    ).records
    event = record.event_log_entry.dagster_event
    assert event is not None
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"ledger": resources["ledger"]},
    ) as context:
        sensor(context.for_run_failure())


def _over_budget_run(
    resources: dict[str, Any], instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    assert dg.materialize(
        [tickets, LABELS], resources=resources, instance=instance, partition_key="eu"
    ).success
    _, spent = resources["ledger"].spend()
    per_row = spent / ROWS["eu"]
    return dg.materialize(
        [tickets, LABELS],
        resources=resources,
        instance=instance,
        partition_key="us",
        raise_on_error=False,
        run_config={"ops": {"ticket_labels": {"config": {"max_cost_usd": 30 * per_row}}}},
    )


@pytest.fixture
def slow_resources(simulator: SimulatorServer, tmp_path: Path) -> dict[str, Any]:
    # One request at a time, so the budget stops the step after a known share of the rows.
    return make_resources(simulator, tmp_path, max_concurrency=1)


@pytest.mark.timeout(300)
def test_budget_failure_alert_names_asset_partition_error_and_spend(
    sqlite_instance: dg.DagsterInstance, slow_resources: dict[str, Any]
) -> None:
    result = _over_budget_run(slow_resources, sqlite_instance)
    sent: list[LLMFailureAlert] = []
    sensor = llm_failure_sensor(sent.append, ui_url="http://dagster.example.com/")
    _alerts_for(sensor, result, sqlite_instance, slow_resources)

    (alert,) = sent
    entries, run_spend = slow_resources["ledger"].spend(run_id=result.run_id)
    assert 0 < entries < ROWS["us"]
    assert alert.assets == ("ticket_labels",)
    assert alert.partition == "us"
    assert alert.error_class == "BudgetExceededError"
    assert "budget" in alert.error_message
    assert alert.spend_usd == pytest.approx(run_spend) and alert.spend_usd > 0
    assert alert.requests_paid == entries
    assert alert.spend_by_asset.keys() == {"ticket_labels"}
    assert alert.run_url == f"http://dagster.example.com/runs/{result.run_id}"
    text = alert.text()
    assert "ticket_labels, partition us (BudgetExceededError)" in text
    assert f"{entries} paid requests" in text


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/services/T000/B000/secret"
    monkeypatch.setenv("LLM_ASSETS_TEST_SLACK_URL", url)
    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(300)
def test_slack_webhook_receives_the_alert(
    sqlite_instance: dg.DagsterInstance, slow_resources: dict[str, Any], slack_url: str
) -> None:
    result = _over_budget_run(slow_resources, sqlite_instance)
    hook = SlackWebhook(dg.EnvVar("LLM_ASSETS_TEST_SLACK_URL"))
    assert "secret" not in repr(hook)
    _alerts_for(llm_failure_sensor(hook), result, sqlite_instance, slow_resources)
    (message,) = _Receiver.received
    assert "LLM run failed: ticket_labels, partition us (BudgetExceededError)" in message["text"]
    assert "Spend so far: $" in message["text"]


def test_slack_webhook_error_names_the_problem_not_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLM_ASSETS_TEST_SLACK_URL", raising=False)
    alert = LLMFailureAlert("r", "j", ("a",), None, "E", "m", 0.0, 0)
    with pytest.raises(Exception, match="LLM_ASSETS_TEST_SLACK_URL is not set"):
        SlackWebhook(dg.EnvVar("LLM_ASSETS_TEST_SLACK_URL"))(alert)
    # A closed port on this machine: the message says what failed and hides the secret URL.
    with pytest.raises(Exception, match="could not be reached") as caught:
        SlackWebhook("http://127.0.0.1:9/secret-token-path", timeout_s=2)(alert)
    assert "secret-token-path" not in str(caught.value)


@pytest.mark.timeout(300)
def test_failure_outside_llm_steps_sends_nothing(
    sqlite_instance: dg.DagsterInstance, resources: dict[str, Any]
) -> None:
    result = dg.materialize(
        [broken_tickets, BROKEN],
        resources=resources,
        instance=sqlite_instance,
        partition_key="eu",
        raise_on_error=False,
    )
    sent: list[LLMFailureAlert] = []
    _alerts_for(llm_failure_sensor(sent.append), result, sqlite_instance, resources)
    assert sent == []
