"""The simulator's Files and Batch APIs, driven through the real ``openai`` SDK over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel, Field

from llm_assets.simulator import SimulatorServer, estimate_prompt_tokens
from llm_assets.task import strict_json_schema


class Verdict(BaseModel):
    sentiment: Literal["positive", "neutral", "negative"]
    score: int = Field(ge=1, le=5)
    themes: list[str] = Field(min_length=1, max_length=3)


VERDICT_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "Verdict", "schema": strict_json_schema(Verdict), "strict": True},
}


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": text}], **extra}


def chat_line(custom_id: str, text: str, **extra: Any) -> dict[str, Any]:
    body = chat_body(text, **extra)
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def review_lines(count: int) -> list[dict[str, Any]]:
    return [
        chat_line(f"review-{i:03d}", f"Review {i}: battery lasts, screen scratches", max_tokens=300)
        for i in range(count)
    ]


def upload(client: openai.OpenAI, lines: list[Any] | bytes) -> str:
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(x) + "\n" for x in lines)
    payload = data if isinstance(data, bytes) else data.encode()
    return client.files.create(file=("batch.jsonl", payload), purpose="batch").id


def submit(client: openai.OpenAI, lines: list[Any] | bytes, **metadata: str) -> Any:
    return client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"pipeline": "tests", **metadata},
    )


def read_jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


@pytest.fixture
def manual(simulator: SimulatorServer) -> SimulatorServer:
    """The simulator with batches that move only when a test advances them."""
    simulator.configure(batch_auto_complete_s=0)
    return simulator


@pytest.fixture
def client(simulator: SimulatorServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.base_url, api_key="sk-test", max_retries=0)


@pytest.mark.timeout(60)
def test_happy_path_steps_and_shuffled_schema_valid_output(
    manual: SimulatorServer, client: openai.OpenAI
) -> None:
    lines = [
        chat_line(f"row-{i:02d}", f"Review {i}: fast shipping", response_format=VERDICT_FORMAT)
        for i in range(20)
    ]
    batch = submit(client, lines, run="happy")
    assert (batch.status, batch.object, batch.model) == ("validating", "batch", "sim-small")
    assert batch.metadata == {"pipeline": "tests", "run": "happy"}
    seen = [manual.advance_batches(batch_id=batch.id)[0]["status"] for _ in range(3)]
    assert seen == ["in_progress", "finalizing", "completed"]

    done = client.batches.retrieve(batch.id)
    assert done.request_counts is not None and done.usage is not None
    assert done.request_counts.model_dump() == {"completed": 20, "failed": 0, "total": 20}
    assert done.error_file_id is None and done.errors is None
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    output = read_jsonl(client, done.output_file_id)
    ids = [line["custom_id"] for line in output]
    assert sorted(ids) == [line["custom_id"] for line in lines]
    assert ids != sorted(ids), "OpenAI does not keep input order; the simulator shuffles"
    by_id = {line["custom_id"]: line for line in lines}
    prompt_total = 0
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        reply = openai.types.chat.ChatCompletion.model_validate(line["response"]["body"])
        Verdict.model_validate_json(reply.choices[0].message.content or "")
        messages = by_id[line["custom_id"]]["body"]["messages"]
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == estimate_prompt_tokens(messages)
        prompt_total += reply.usage.prompt_tokens
    assert done.usage.input_tokens == prompt_total
    output_file = client.files.retrieve(done.output_file_id or "")
    assert (output_file.purpose, output_file.bytes) == (
        "batch_output",
        len(client.files.content(output_file.id).content),
    )


@pytest.mark.timeout(60)
def test_batch_lines_are_not_online_requests(
    manual: SimulatorServer, client: openai.OpenAI
) -> None:
    lines = review_lines(8)
    batch = submit(client, lines)
    manual.advance_batches(batch_id=batch.id, to_end=True)
    output = read_jsonl(client, client.batches.retrieve(batch.id).output_file_id)

    stats = manual.stats()
    assert (stats["chat_requests"], stats["chat_completions"]) == (0, 0)
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (0, 0)
    assert stats["batches_created"] == 1 and stats["files_uploaded"] == 1
    assert stats["batch_lines"] == 8
    bodies = [line["response"]["body"] for line in output]
    assert stats["batch_prompt_tokens"] == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert stats["batch_completion_tokens"] == sum(b["usage"]["completion_tokens"] for b in bodies)

    # The same request online gets the same answer and the same usage.
    first = next(line for line in output if line["custom_id"] == "review-000")["response"]["body"]
    online = client.chat.completions.create(**lines[0]["body"])
    assert online.choices[0].message.content == first["choices"][0]["message"]["content"]
    assert online.usage is not None and online.usage.model_dump(exclude_none=True) == first["usage"]
    assert manual.stats()["chat_completions"] == 1

    manual.reset()
    assert manual.stats()["batches_created"] == 0
    assert client.batches.retrieve(batch.id).status == "completed", "reset keeps batches"


@pytest.mark.timeout(60)
def test_batches_complete_on_their_own(simulator: SimulatorServer, client: openai.OpenAI) -> None:
    assert simulator.configure()["batch_auto_complete_s"] == 3.0
    batch = submit(client, review_lines(3), sim_complete_after_s="0.6")
    statuses = [batch.status]
    deadline = time.monotonic() + 30
    while statuses[-1] != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = client.batches.retrieve(batch.id).status
        if status != statuses[-1]:
            statuses.append(status)
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert statuses[-1] == "completed"
    assert statuses == sorted(statuses, key=order.index)


@pytest.mark.timeout(60)
def test_line_error_rate_fills_the_error_file(
    manual: SimulatorServer, client: openai.OpenAI
) -> None:
    batch = submit(client, review_lines(20), sim_line_error_rate="0.25")
    manual.advance_batches(batch_id=batch.id, to_end=True)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts is not None
    assert done.request_counts.model_dump() == {"completed": 15, "failed": 5, "total": 20}
    output = read_jsonl(client, done.output_file_id)
    failed = read_jsonl(client, done.error_file_id)
    assert len(output) == 15 and len(failed) == 5
    for line in failed:
        assert line["error"] is None and line["response"]["status_code"] == 500
        assert line["response"]["body"]["error"]["type"] == "server_error"
    every_id = {line["custom_id"] for line in output + failed}
    assert every_id == {f"review-{i:03d}" for i in range(20)}


@pytest.mark.timeout(60)
def test_refused_bodies_and_markers_answer_per_line(
    manual: SimulatorServer, client: openai.OpenAI
) -> None:
    no_messages = {"custom_id": "no-messages", "method": "POST", "url": "/v1/chat/completions"}
    lines = [
        chat_line("good", "hello"),
        {**no_messages, "body": {"model": "sim-small"}},
        chat_line("overloaded", "hello [[sim:503]]"),
        chat_line("refused", "hello [[sim:refusal]]"),
        chat_line("too-long", "hello", max_tokens=10**6),
    ]
    batch = submit(client, lines)
    manual.advance_batches(batch_id=batch.id, to_end=True)
    done = client.batches.retrieve(batch.id)
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"completed": 2, "failed": 3, "total": 5}
    failed = {
        line["custom_id"]: line["response"] for line in read_jsonl(client, done.error_file_id)
    }
    assert {key: value["status_code"] for key, value in failed.items()} == {
        "no-messages": 400,
        "overloaded": 503,
        "too-long": 400,
    }
    assert failed["too-long"]["body"]["error"]["code"] == "context_length_exceeded"
    output = {line["custom_id"]: line for line in read_jsonl(client, done.output_file_id)}
    assert output["refused"]["response"]["body"]["choices"][0]["message"]["refusal"]


@pytest.mark.timeout(60)
def test_expired_batch_keeps_partial_output(manual: SimulatorServer, client: openai.OpenAI) -> None:
    batch = submit(client, review_lines(10), sim_outcome="expired", sim_partial_fraction="0.4")
    moved = [manual.advance_batches(batch_id=batch.id)[0]["status"] for _ in range(2)]
    assert moved == ["in_progress", "expired"]
    done = client.batches.retrieve(batch.id)
    assert done.expired_at and done.completed_at is None
    assert done.request_counts is not None
    assert done.request_counts.model_dump() == {"completed": 4, "failed": 0, "total": 10}
    assert len(read_jsonl(client, done.output_file_id)) == 4
    unfinished = read_jsonl(client, done.error_file_id)
    assert len(unfinished) == 6
    assert {line["error"]["code"] for line in unfinished} == {"batch_expired"}
    assert all(line["response"] is None for line in unfinished)


@pytest.mark.timeout(60)
def test_cancel_moves_through_cancelling(manual: SimulatorServer, client: openai.OpenAI) -> None:
    batch = submit(client, review_lines(10))
    manual.advance_batches(batch_id=batch.id)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    assert manual.advance_batches(batch_id=batch.id)[0]["status"] == "cancelled"
    done = client.batches.retrieve(batch.id)
    assert done.cancelled_at and done.request_counts is not None
    assert done.request_counts.model_dump() == {"completed": 5, "failed": 0, "total": 10}
    assert len(read_jsonl(client, done.output_file_id)) == 5
    codes = {line["error"]["code"] for line in read_jsonl(client, done.error_file_id)}
    assert codes == {"batch_cancelled"}
    with pytest.raises(openai.ConflictError, match="cancelled"):
        client.batches.cancel(batch.id)


@pytest.mark.timeout(60)
def test_invalid_input_file_fails_the_batch(manual: SimulatorServer, client: openai.OpenAI) -> None:
    good = chat_line("a", "hello")
    data = "\n".join(
        [
            json.dumps(good),
            "{not json",
            json.dumps(good),
            json.dumps({key: value for key, value in good.items() if key != "method"}),
            json.dumps({**good, "custom_id": "b", "url": "/v1/embeddings"}),
            json.dumps({**good, "custom_id": "c", "body": chat_body("x") | {"model": "sim-large"}}),
        ]
    ).encode()
    batch = submit(client, data)
    assert batch.status == "validating"
    assert manual.advance_batches(batch_id=batch.id)[0]["status"] == "failed"
    failed = client.batches.retrieve(batch.id)
    assert failed.failed_at and failed.output_file_id is None and failed.errors is not None
    found = [(error.code, error.line, error.param) for error in failed.errors.data or []]
    assert found == [
        ("invalid_json_line", 2, None),
        ("duplicate_custom_id", 3, "custom_id"),
        ("missing_required_parameter", 4, "method"),
        ("url_mismatch", 5, "url"),
        ("model_mismatch", 6, "body.model"),
    ]
    assert manual.stats()["batch_lines"] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("data", "code"),
    [(b"\n\n", "empty_file"), (b"".join([b"{}\n"] * 4), "too_many_tasks")],
)
def test_file_level_problems(
    manual: SimulatorServer, client: openai.OpenAI, data: bytes, code: str
) -> None:
    manual.configure(batch_max_lines=3)
    batch = submit(client, data)
    manual.advance_batches(batch_id=batch.id)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [error.code for error in failed.errors.data or []] == [code]


@pytest.mark.timeout(60)
def test_limits_and_request_validation(simulator: SimulatorServer, client: openai.OpenAI) -> None:
    simulator.configure(batch_max_file_bytes=100)
    with pytest.raises(openai.BadRequestError, match="too large") as refused:
        upload(client, review_lines(2))
    assert refused.value.code == "file_too_large"
    assert simulator.stats()["files_uploaded"] == 0
    simulator.configure(batch_max_file_bytes=10_000)

    file_id = upload(client, review_lines(1))
    bad_requests: list[tuple[str, dict[str, Any]]] = [
        ("completion_window", {"completion_window": "1h"}),
        ("file-nope", {"input_file_id": "file-nope"}),
        ("metadata", {"metadata": {"n": 1}}),
        ("endpoint", {"endpoint": "/v1/embeddings"}),
    ]
    for message, change in bad_requests:
        body: dict[str, Any] = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
        body |= {"completion_window": "24h", **change}
        with pytest.raises(openai.BadRequestError, match=message):
            client.batches.create(**body)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_unknown")
    simulator.configure(api_keys=["sk-only-this-one"])
    with pytest.raises(openai.AuthenticationError):
        client.files.list()
    with pytest.raises(openai.AuthenticationError):
        client.batches.retrieve("batch_unknown")


@pytest.mark.timeout(60)
def test_list_pages_newest_first(manual: SimulatorServer, client: openai.OpenAI) -> None:
    file_id = upload(client, review_lines(1))
    created = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    first = client.batches.list(limit=2)
    assert [batch.id for batch in first.data] == created[:0:-1] and first.has_more
    second = client.batches.list(limit=2, after=created[1])
    assert second.data[0].id == created[0]


@pytest.mark.timeout(60)
def test_files_retrieve_list_delete(simulator: SimulatorServer, client: openai.OpenAI) -> None:
    file_id = upload(client, b'{"x": 1}\n')
    stored = client.files.retrieve(file_id)
    assert (stored.filename, stored.bytes, stored.purpose) == ("batch.jsonl", 9, "batch")
    assert file_id in {item.id for item in client.files.list(purpose="batch")}
    assert client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.content(file_id)


@pytest.mark.timeout(60)
def test_outcome_knob_and_metadata_override(manual: SimulatorServer, client: openai.OpenAI) -> None:
    manual.configure(batch_outcome="failed")
    doomed = submit(client, review_lines(2))
    spared = submit(client, review_lines(2), sim_outcome="completed")
    manual.advance_batches(to_end=True)
    failed = client.batches.retrieve(doomed.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [error.code for error in failed.errors.data or []] == ["simulated_failure"]
    assert client.batches.retrieve(spared.id).status == "completed"
    with pytest.raises(openai.BadRequestError, match="sim_outcome"):
        submit(client, review_lines(1), sim_outcome="exploded")
