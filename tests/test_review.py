"""The review gate in real Dagster runs: flagged rows wait, decisions flow, nobody asked twice."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
import pytest
from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from llm_assets import (
    LLMTask,
    ReviewDesk,
    ReviewPolicy,
    format_trace,
    llm_asset,
    reviewed_asset,
    trace_row,
)
from llm_assets.resources.review import ReviewRefused
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.review.page import review_app
from llm_assets.sensors import ReviewWaitingAlert, review_sensor
from llm_assets.simulator import SimulatorServer

pytestmark = pytest.mark.timeout(120)

DAYS = dg.StaticPartitionsDefinition(["d1", "d2"])
FLAGGED = {1, 4, 7}


class Triage(BaseModel):
    label: Literal["spam", "ham"]
    note: str = Field(max_length=60)


TASK = LLMTask(
    name="triage",
    system_prompt="Triage the message.",
    user_prompt="Message: {text}",
    output_schema=Triage,
    id_column="id",
)


class Clock:
    """A virtual clock the policy reads."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def rows(day: str, changed: int | None = None) -> list[dict[str, Any]]:
    out = [{"id": i, "text": f"message {i} about the {day} order"} for i in range(10)]
    if changed is not None:
        out[changed]["text"] = "a different message now"
    return out


def build(
    clock: Clock | None = None, changed: int | None = None, **policy: Any
) -> tuple[list[dg.AssetsDefinition], dg.AssetsDefinition, dg.AssetsDefinition]:
    @dg.asset(name="messages", partitions_def=DAYS)
    def messages(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame(rows(context.partition_key, changed))

    settings: dict[str, Any] = {"when": lambda row: "watch list" if row["id"] in FLAGGED else None}
    if clock is not None:
        settings["clock"] = clock
    settings.update(policy)
    gate = llm_asset(TASK, upstream=messages, review=ReviewPolicy(**settings))
    reviewed = reviewed_asset(gate)
    return [messages, gate, reviewed], gate, reviewed


def materialize(
    assets: list[dg.AssetsDefinition],
    selection: list[str],
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    partition: str = "d1",
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        selection=selection,
        partition_key=partition,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def table(resources: dict[str, Any], name: str, partition: str = "d1") -> pd.DataFrame:
    manager: ParquetIOManager = resources["io_manager"]
    found = manager.find_table(dg.AssetKey(name), partition)
    assert found is not None, f"{name} {partition} was not written"
    return found


def evaluate(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    defs: dg.Definitions,
    cursor: str | None,
) -> Any:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)


GATE = ["messages", "triage", "triage_quarantine"]
REVIEWED = ["triage_reviewed", "triage_reviewed_quarantine"]


def test_flagged_rows_wait_and_decisions_flow_into_the_reviewed_asset(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, _ = build()
    result = materialize(assets, GATE, resources, sqlite_instance)
    assert result.success
    gated = table(resources, "triage")
    assert dict(gated["review_status"].value_counts()) == {"not_required": 7, "pending": 3}
    assert set(gated.loc[gated["review_status"] == "pending", "id"]) == FLAGGED
    meta = result.asset_materializations_for_node("triage")[0].metadata
    assert meta["review_pending"].value == 3
    assert meta["review_url"].value.endswith("/review/triage/d1")

    desk = ReviewDesk.of(dg.Definitions(assets=assets, resources=resources))
    pending = {int(i.row_id): i for i in desk.items("triage", "d1")}
    assert set(pending) == FLAGGED
    assert pending[1].reason == "watch list"
    assert pending[1].row["inputs"] == {"text": "message 1 about the d1 order", "id": 1}
    assert desk.prompt(pending[1])[-1]["content"] == "Message: message 1 about the d1 order"

    # Before anyone decides, the reviewed asset holds the flagged rows back: its check warns.
    early = materialize(assets, REVIEWED, resources, sqlite_instance)
    assert early.success
    check = early.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["held_back"].value == 3
    assert sorted(table(resources, "triage_reviewed")["id"]) == [0, 2, 3, 5, 6, 8, 9]

    desk.approve(pending[1].item_id, reviewer="ana")
    desk.edit(pending[4].item_id, reviewer="ana", value={"label": "ham", "note": "fixed by ana"})
    desk.reject(pending[7].item_id, reviewer="bo", reason="not a customer message")
    assert desk.counts("triage", "d1") == {"approved": 1, "edited": 1, "rejected": 1}

    late = materialize(assets, REVIEWED, resources, sqlite_instance)
    assert late.success and late.get_asset_check_evaluations()[0].passed
    out = table(resources, "triage_reviewed").set_index("id")
    assert sorted(out.index) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert out.loc[4, "note"] == "fixed by ana" and out.loc[4, "review_status"] == "edited"
    assert out.loc[1, "review_status"] == "approved" and out.loc[1, "reviewed_by"] == "ana"
    assert out.loc[0, "review_status"] == "not_required"
    rejected = table(resources, "triage_reviewed_quarantine")
    assert rejected[["id", "reason", "rejected_by"]].values.tolist() == [
        [7, "not a customer message", "bo"]
    ]


def test_unchanged_rows_ask_nobody_again_and_a_changed_row_is_pending_again(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, _ = build()
    assert materialize(assets, GATE, resources, sqlite_instance).success
    desk = ReviewDesk.of(dg.Definitions(assets=assets, resources=resources))
    for item in desk.items("triage", "d1"):
        desk.approve(item.item_id, reviewer="ana")
    sent = simulator.stats()["chat_requests"]

    again = materialize(assets, GATE, resources, sqlite_instance)
    assert again.success
    assert simulator.stats()["chat_requests"] == sent  # 0 requests: the ledger answered
    assert again.asset_materializations_for_node("triage")[0].metadata["review_pending"].value == 0
    assert desk.items("triage", "d1") == []

    # One flagged upstream row changes: exactly that row waits again, the rest keep theirs.
    changed, _, _ = build(changed=4)
    assert materialize(changed, GATE, resources, sqlite_instance).success
    desk = ReviewDesk.of(dg.Definitions(assets=changed, resources=resources))
    assert [i.row_id for i in desk.items("triage", "d1")] == ["4"]
    assert simulator.stats()["chat_requests"] == sent + 1
    assert desk.counts("triage", "d1") == {"approved": 2, "pending": 1}


def test_bad_decisions_are_refused_with_a_sentence_and_nothing_recorded(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, _ = build()
    assert materialize(assets, GATE, resources, sqlite_instance).success
    desk = ReviewDesk.of(dg.Definitions(assets=assets, resources=resources))
    item = desk.items("triage", "d1")[0]

    with pytest.raises(ReviewRefused, match=r"does not match Triage: label: Input should be"):
        desk.edit(item.item_id, reviewer="ana", value={"label": "maybe", "note": "x"})
    with pytest.raises(ReviewRefused, match="no row to review has id 'r-nope'"):
        desk.approve("r-nope", reviewer="ana")
    with pytest.raises(ReviewRefused, match="needs a reason"):
        desk.reject(item.item_id, reviewer="ana", reason=" ")
    assert desk.history(item) == []

    desk.approve(item.item_id, reviewer="ana")
    # The same form sent again (it saw revision 0) is refused: someone decided in between.
    with pytest.raises(ReviewRefused, match=r"was approved by ana at .* after this form"):
        desk.reject(item.item_id, reviewer="bo", reason="spam")
    # A changed decision is a new entry; the history keeps both.
    desk.reject(item.item_id, reviewer="bo", reason="spam after all", seen_revision=1)
    assert [(d.revision, d.decision, d.reviewer) for d in desk.history(item)] == [
        (1, "approved", "ana"),
        (2, "rejected", "bo"),
    ]

    # The row's content changes (a new task version): the old review is stale.
    changed = build()[0]
    changed[1] = llm_asset(
        TASK.model_copy(update={"system_prompt": "Triage it."}),
        upstream=changed[0],
        review=ReviewPolicy(when=lambda row: "watch list" if row["id"] in FLAGGED else None),
    )
    assert materialize(changed[:2], GATE, resources, sqlite_instance).success
    stale = desk.items("triage", "d1")[0]
    with pytest.raises(ReviewRefused, match="is stale"):
        desk.approve(item.item_id, reviewer="ana", seen_revision=2)
    assert stale.item_id != item.item_id and stale.status == "pending"


@pytest.mark.parametrize("on_timeout", ["approve", "reject", "fail"])
def test_the_timeout_settles_waiting_rows_on_a_virtual_clock(
    on_timeout: str,
    simulator: SimulatorServer,
    resources: dict[str, Any],
    sqlite_instance: dg.DagsterInstance,
) -> None:
    clock = Clock()
    assets, _, reviewed = build(clock, timeout_s=3600, on_timeout=on_timeout)
    assert materialize(assets, GATE, resources, sqlite_instance).success
    defs = dg.Definitions(assets=assets, resources=resources)
    desk = ReviewDesk.of(defs)
    first = desk.items("triage", "d1")[0]
    desk.approve(first.item_id, reviewer="ana")
    sensor = review_sensor([reviewed])

    def tick(cursor: str | None) -> Any:
        return evaluate(sensor, sqlite_instance, resources, defs, cursor)

    clock.now += timedelta(minutes=59)
    assert tick(None).run_requests == []  # two rows still wait, within the hour
    clock.now += timedelta(minutes=2)
    fired = tick(None)
    assert [r.tags["llm_assets/review_trigger"] for r in fired.run_requests] == ["timed out"]
    assert tick(fired.cursor).run_requests == []  # asked once

    result = materialize(assets, REVIEWED, resources, sqlite_instance)
    if on_timeout == "fail":
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.error.to_string()  # type: ignore[union-attr]
        assert "2 flagged row(s) waited past the review timeout of 3600 s" in message
        return
    assert result.success
    out = table(resources, "triage_reviewed")
    rejected = table(resources, "triage_reviewed_quarantine")
    timed = out[out["reviewed_by"] == "(timeout)"]
    if on_timeout == "approve":
        assert len(out) == 10 and len(timed) == 2 and rejected.empty
    else:
        assert len(out) == 8 and len(rejected) == 2
        assert set(rejected["rejected_by"]) == {"(timeout)"}
    # The timeout's decisions are recorded: the next materialization asks nobody.
    assert desk.items("triage", "d1") == []


def test_the_sensor_launches_once_per_round_when_every_row_is_decided(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, reviewed = build()
    assert materialize(assets, GATE, resources, sqlite_instance, "d1").success
    second = materialize(assets, GATE, resources, sqlite_instance, "d2")
    assert second.success
    defs = dg.Definitions(assets=assets, resources=resources)
    desk = ReviewDesk.of(defs)
    told: list[ReviewWaitingAlert] = []
    sensor = review_sensor([reviewed], announce=told.append)

    def tick(cursor: str | None) -> Any:
        return evaluate(sensor, sqlite_instance, resources, defs, cursor)

    first = tick(None)
    assert first.run_requests == []
    # Each partition's waiting rows are announced once, with the page's link.
    waiting = {alert.partition: alert.waiting for alert in told}
    assert waiting == {p: len(desk.items("triage", p)) for p in ("d1", "d2")}
    assert all(v > 0 for v in waiting.values())
    assert told[0].url == "http://127.0.0.1:3100/review/triage/d1"
    assert f"{waiting['d1']} rows wait for review: triage, partition d1" in told[0].text()
    items = desk.items("triage", "d2")
    for item in items[:-1]:
        desk.approve(item.item_id, reviewer="ana")
    assert tick(first.cursor).run_requests == []
    assert len(told) == 2  # not told again
    desk.approve(items[-1].item_id, reviewer="ana")
    fired = tick(first.cursor)
    assert [(r.partition_key, r.asset_selection) for r in fired.run_requests] == [
        ("d2", [dg.AssetKey("triage_reviewed"), dg.AssetKey("triage_reviewed_quarantine")])
    ]
    assert fired.run_requests[0].run_key == f"review:triage_reviewed:triage|d2|{second.run_id}"
    assert tick(fired.cursor).run_requests == []
    # A sensor whose cursor is a plain list of launched rounds reads it.
    assert tick(json.dumps([f"triage|d2|{second.run_id}"])).run_requests == []


def test_rounds_without_flags_and_a_failing_destination(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, reviewed = build(when=lambda row: None)  # nothing flagged
    # The gate alone: its reviewed partition is launched, since nobody will decide anything.
    assert materialize(assets, GATE, resources, sqlite_instance, "d1").success
    # The gate with its reviewed asset in one run: nothing to launch.
    assert materialize(assets, GATE + REVIEWED, resources, sqlite_instance, "d2").success
    defs = dg.Definitions(assets=assets, resources=resources)

    def broken(alert: ReviewWaitingAlert) -> None:
        raise ConnectionError("the chat service is down")

    sensor = review_sensor([reviewed], announce=broken)
    fired = evaluate(sensor, sqlite_instance, resources, defs, None)
    assert [(r.partition_key, r.tags["llm_assets/review_trigger"]) for r in fired.run_requests] == [
        ("d1", "nothing flagged")
    ]
    assert evaluate(sensor, sqlite_instance, resources, defs, fired.cursor).run_requests == []

    # Rows wait on d1 now, and the destination fails: the tick still launches what is due
    # (nothing here), announces nothing, and the next tick tries again.
    flagged, _, reviewed = build()
    waiting = materialize(flagged, GATE, resources, sqlite_instance, "d1")
    assert waiting.success
    defs = dg.Definitions(assets=flagged, resources=resources)
    failing = evaluate(review_sensor([reviewed], announce=broken), sqlite_instance, resources,
                       defs, None)  # fmt: skip
    assert json.loads(failing.cursor)["announced"] == []
    told: list[ReviewWaitingAlert] = []
    retried = evaluate(review_sensor([reviewed], announce=told.append), sqlite_instance,
                       resources, defs, failing.cursor)  # fmt: skip
    assert [(a.partition, a.waiting) for a in told] == [("d1", len(FLAGGED))]
    assert json.loads(retried.cursor)["announced"] == [f"triage|d1|{waiting.run_id}"]


def test_policy_rules_flag_by_threshold_label_failure_and_a_reproducible_sample() -> None:
    policy = ReviewPolicy(
        below={"confidence": 0.7}, labels={"topics": ["refund"]}, failed=True, sample_rate=0.1
    )
    assert policy.reason({"confidence": 0.2, "llm_status": "ok"}, "k") == "confidence 0.2 < 0.7"
    assert policy.reason({"topics": ["refund", "x"], "llm_status": "ok"}, "k") == "topics is refund"
    assert policy.reason({"llm_status": "failed", "llm_error_class": "invalid_schema"}, "k") == (
        "failed: invalid_schema"
    )
    keys = [f"{i:064x}" for i in range(2000)]
    drawn = [k for k in keys if policy.reason({"confidence": 0.9, "llm_status": "ok"}, k)]
    assert 150 < len(drawn) < 250  # about 10%
    again = ReviewPolicy(sample_rate=0.1)
    assert drawn == [k for k in keys if again.reason({"llm_status": "ok"}, k)]
    other_seed = ReviewPolicy(sample_rate=0.1, seed=1)
    assert drawn != [k for k in keys if other_seed.reason({"llm_status": "ok"}, k)]
    with pytest.raises(ValueError, match="labels for topics list no value"):
        ReviewPolicy(labels={"topics": []})


def test_a_gate_without_a_ledger_says_so(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:  # fmt: skip
    assets, _, _ = build()
    without = {k: v for k, v in resources.items() if k != "ledger"}
    gate = llm_asset(
        TASK, upstream=assets[0], review=ReviewPolicy(sample_rate=1.0), ledger_resource_key=None
    )
    result = materialize([assets[0], gate], GATE, without, sqlite_instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "has a review gate, which keeps its decisions in the ledger's database" in (
        failure.step_failure_data.error.to_string()  # type: ignore[union-attr]
    )


def test_the_review_page_needs_the_token_checks_csrf_and_refuses_with_a_sentence(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, _ = build()
    assert materialize(assets, GATE, resources, sqlite_instance).success
    desk = ReviewDesk.of(dg.Definitions(assets=assets, resources=resources))
    items = {int(i.row_id): i for i in desk.items("triage", "d1")}
    url = "/review/triage/d1"

    read_only = TestClient(review_app(desk, token=None))
    page = read_only.get(url)
    assert page.status_code == 200 and "read-only" in page.text and "Approve" not in page.text
    assert "message 1 about the d1 order" in page.text  # the input and the rendered prompt
    form = {"item_id": items[1].item_id, "revision": "0", "action": "approve", "csrf": "x"}
    refused = read_only.post(f"{url}/decide", data=form)
    assert refused.status_code == 403 and "this page is read-only" in refused.text

    client = TestClient(review_app(desk, token="s3cret-token"))
    assert "sign in with the review token" in client.post(f"{url}/decide", data=form).text
    bad = client.post("/login", data={"reviewer": "ana", "token": "wrong", "next": url})
    assert bad.status_code == 403 and "did not match" in bad.text
    assert (
        client.post("/login", data={"reviewer": "ana", "token": "s3cret-token"}).status_code == 200
    )
    page = client.get(url)
    assert "signed in as <b>ana</b>" in page.text and "s3cret-token" not in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    forged = client.post(f"{url}/decide", data={**form, "csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert desk.history(items[1]) == []

    ok = client.post(f"{url}/decide", data={**form, "csrf": csrf})
    assert ok.status_code == 200 and "Recorded: approve" in ok.text
    replayed = client.post(f"{url}/decide", data={**form, "csrf": csrf})
    assert replayed.status_code == 409 and "was approved by ana" in replayed.text
    edit = {
        "item_id": items[4].item_id, "revision": "0", "action": "edit", "csrf": csrf,
        "field:label": "maybe", "field:note": "x",
    }  # fmt: skip
    schema_error = client.post(f"{url}/decide", data=edit)
    assert schema_error.status_code == 409 and "does not match Triage" in schema_error.text
    unknown = client.post(f"{url}/decide", data={**form, "item_id": "r-nope", "csrf": csrf})
    assert "no row to review has id" in unknown.text
    assert desk.counts("triage", "d1") == {"approved": 1, "pending": 2}
    assert client.post(f"{url}/decide", data={**edit, "field:label": "ham"}).status_code == 200
    assert desk.item(items[4].item_id).value == {"label": "ham", "note": "x"}
    assert "triage" in client.get("/").text


def test_trace_shows_the_decision_and_the_edit_as_a_diff(
    simulator: SimulatorServer, resources: dict[str, Any], sqlite_instance: dg.DagsterInstance
) -> None:
    assets, _, _ = build()
    assert materialize(assets, GATE, resources, sqlite_instance).success
    defs = dg.Definitions(assets=assets, resources=resources)
    desk = ReviewDesk.of(defs)
    item = next(i for i in desk.items("triage", "d1") if i.row_id == "4")
    before = item.row["output"]["note"]
    desk.edit(item.item_id, reviewer="ana", value={"label": "ham", "note": "fixed"})
    for asset in ("triage", "triage_reviewed"):
        trace = trace_row(defs, sqlite_instance, asset, "4", partition="d1")
        assert trace.review_reason == "watch list"
        (decision,) = trace.review
        assert decision["reviewer"] == "ana" and decision["decision"] == "edited"
        assert f'- note: "{before}"' in decision["diff"] and '+ note: "fixed"' in decision["diff"]
    assert "edited by ana at" in format_trace(trace)
