"""The Batch API client, through the real ``openai`` SDK against the simulator over HTTP."""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from llm_assets.resources.batch import BatchClient, BatchLine, SubmittedBatch
from llm_assets.resources.errors import (
    AuthenticationFailed,
    EndpointUnreachable,
    ProviderError,
    QuotaExhausted,
    UserError,
)
from llm_assets.resources.llm import ChatRequest
from llm_assets.simulator import SimulatorServer
from tests.conftest import TEST_API_KEY

pytestmark = pytest.mark.timeout(60)

# Loopback control calls must not go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

VERDICT_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "Verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
            "required": ["sentiment"],
            "additionalProperties": False,
        },
    },
}


def chat_request(i: int, text: str | None = None, model: str = "sim-small") -> ChatRequest:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text or f"Review {i}: battery lasts all day"}],
        "response_format": VERDICT_FORMAT,
    }
    key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return ChatRequest(key=key, body=body, est_prompt_tokens=12)


def advance(sim: SimulatorServer, **body: Any) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{sim.url}/_simulator/batches/advance",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with _OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())["data"]


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


@pytest.fixture
def manual(simulator: SimulatorServer) -> Iterator[SimulatorServer]:
    """The simulator with batches that move only when a test advances them.

    Batches outlive a test in the session's simulator; every one left is ended afterwards,
    so that no later test's ``advance`` runs (and counts) this test's lines.
    """
    simulator.configure(batch_auto_complete_s=0)
    yield simulator
    simulator.configure(insufficient_quota=False, api_keys=[])
    advance(simulator, to_end=True)


@pytest.fixture
def client(manual: SimulatorServer) -> Iterator[BatchClient]:
    with BatchClient(manual.base_url, TEST_API_KEY, timeout_s=10, max_lines_per_file=4) as client:
        yield client


def test_write_jsonl_splits_by_line_count_and_model_once_per_key() -> None:
    requests = [chat_request(i) for i in range(9)] + [chat_request(0)]  # one repeated
    requests += [chat_request(i, model="sim-large") for i in range(2)]
    client = BatchClient("http://127.0.0.1:1/v1", TEST_API_KEY, max_lines_per_file=4)

    files = [lines_of(data) for data in client.write_jsonl(requests)]

    assert [len(lines) for lines in files] == [4, 4, 1, 2]
    assert [{line["body"]["model"] for line in lines} for lines in files] == [
        {"sim-small"},
        {"sim-small"},
        {"sim-small"},
        {"sim-large"},
    ]
    written = [line for lines in files for line in lines]
    assert [line["custom_id"] for line in written] == list(
        dict.fromkeys(request.key for request in requests)
    )
    assert written[0] == {
        "custom_id": requests[0].key,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": requests[0].body,
    }


def test_write_jsonl_splits_by_bytes() -> None:
    requests = [chat_request(i, text=f"{i:03d} " + "é" * 300) for i in range(7)]
    line_bytes = len(BatchClient("http://127.0.0.1:1/v1", "k").write_jsonl(requests[:1])[0])
    limit = int(2.5 * line_bytes)
    client = BatchClient("http://127.0.0.1:1/v1", "k", max_bytes_per_file=limit)

    files = client.write_jsonl(requests)

    assert [len(lines_of(data)) for data in files] == [2, 2, 2, 1]
    assert all(len(data) <= limit for data in files)
    with pytest.raises(UserError, match="more than the 100 bytes"):
        BatchClient("http://127.0.0.1:1/v1", "k", max_bytes_per_file=100).write_jsonl(requests)


def test_submit_poll_and_read_results(manual: SimulatorServer, client: BatchClient) -> None:
    requests = [chat_request(i) for i in range(10)]
    announced: list[SubmittedBatch] = []

    submitted = client.submit(
        requests, metadata={"asset": "review_insights"}, on_submitted=announced.append
    )

    assert announced == submitted
    assert [len(batch.request_keys) for batch in submitted] == [4, 4, 2]
    assert [key for batch in submitted for key in batch.request_keys] == [r.key for r in requests]
    assert manual.stats()["batches_created"] == 3 and manual.stats()["files_uploaded"] == 3
    status = client.retrieve(submitted[0].batch_id)
    assert (status.status, status.is_terminal) == ("validating", False)
    assert status.metadata == {"asset": "review_insights"}

    advance(manual, to_end=True)

    bodies = {request.key: request.body for request in requests}
    assert client.requests(submitted[2].input_file_id) == {
        key: bodies[key] for key in submitted[2].request_keys
    }
    for batch in submitted:
        done = client.retrieve(batch.batch_id)
        assert (done.status, done.is_terminal, done.error_file_id) == ("completed", True, None)
        assert (done.total, done.completed, done.failed) == (len(batch.request_keys),) * 2 + (0,)
        assert done.output_file_id is not None
        lines = list(client.results(done.output_file_id))
        assert sorted(line.custom_id for line in lines) == sorted(batch.request_keys)
        for line in lines:
            assert line.ok and line.error_code is None and line.body is not None
            assert line.body["model"] == bodies[line.custom_id]["model"]
            answer = json.loads(line.body["choices"][0]["message"]["content"])
            assert answer["sentiment"] in ("positive", "negative")


def test_error_file_lines_are_typed(manual: SimulatorServer, client: BatchClient) -> None:
    requests = [chat_request(i) for i in range(2)]
    requests.append(chat_request(2, text="Review 2 [[sim:500]]"))
    requests.append(chat_request(3, text="Review 3 [[sim:context_length]]"))
    failing = client.submit(requests, metadata={})[0]
    expiring = client.submit(
        [chat_request(i) for i in range(10, 14)],
        metadata={"sim_outcome": "expired", "sim_partial_fraction": "0.5"},
    )[0]

    advance(manual, to_end=True)

    failed = client.retrieve(failing.batch_id)
    assert failed.status == "completed" and failed.error_file_id is not None
    errors = {line.custom_id: line for line in client.results(failed.error_file_id)}
    assert errors[requests[3].key].status_code == 400
    assert errors[requests[3].key].error_code == "context_length_exceeded"
    assert errors[requests[2].key].status_code == 500
    assert errors[requests[2].key].error_code == "server_error"
    assert all(not line.ok and line.error_message for line in errors.values())
    assert failed.failed == 2 and failed.completed == 2

    expired = client.retrieve(expiring.batch_id)
    assert expired.status == "expired" and expired.error_file_id is not None
    unexecuted = list(client.results(expired.error_file_id))
    assert len(unexecuted) == 2
    assert all(
        (line.status_code, line.body, line.error_code) == (None, None, "batch_expired")
        for line in unexecuted
    )


def test_results_skip_blank_lines_in_any_order(manual: SimulatorServer) -> None:
    raw = openai.OpenAI(base_url=manual.base_url, api_key=TEST_API_KEY, max_retries=0)
    ok = {"status_code": 200, "request_id": "r", "body": {"choices": []}}
    text = (
        "\n"
        + json.dumps({"id": "1", "custom_id": "b", "response": ok, "error": None})
        + "\n\n  \n"
        + json.dumps({"id": "2", "custom_id": "a", "response": ok, "error": None})
        + "\n"
    )
    file_id = raw.files.create(file=("out.jsonl", text.encode()), purpose="batch").id
    with BatchClient(manual.base_url, TEST_API_KEY) as client:
        assert list(client.results(file_id)) == [
            BatchLine("b", 200, {"choices": []}, None, None),
            BatchLine("a", 200, {"choices": []}, None, None),
        ]
        not_results = raw.files.create(file=("x.jsonl", b'["a list"]\n'), purpose="batch").id
        with pytest.raises(ProviderError, match=r"line 1 of file .* is not a batch result"):
            list(client.results(not_results))
        with pytest.raises(ProviderError, match="HTTP 404"):
            client.requests("file-unknown")


def test_cancel_and_a_failed_batch(manual: SimulatorServer, client: BatchClient) -> None:
    running = client.submit([chat_request(1)], metadata={})[0]
    assert client.cancel(running.batch_id).status == "cancelling"
    refused = client.submit([chat_request(2)], metadata={"sim_outcome": "failed"})[0]

    advance(manual, to_end=True)

    assert client.retrieve(running.batch_id).status == "cancelled"
    failed = client.retrieve(refused.batch_id)
    assert failed.status == "failed" and failed.is_terminal
    assert failed.errors == ["simulated_failure: Failed on purpose (sim_outcome=failed)."]
    with pytest.raises(ProviderError, match="HTTP 409") as conflict:
        client.cancel(running.batch_id)
    assert conflict.value.status_code == 409
    with pytest.raises(ProviderError, match="HTTP 404"):
        client.retrieve("batch_unknown")


def test_a_lost_create_answer_does_not_start_the_batch_twice(
    manual: SimulatorServer, client: BatchClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create = openai.resources.batches.Batches.create
    calls: list[str] = []

    def answer_lost_once(self: Any, **kwargs: Any) -> Any:
        batch = real_create(self, **kwargs)  # the endpoint creates it...
        calls.append(batch.id)
        if len(calls) == 1:  # ...but the first answer never arrives
            # Built as the SDK builds it: around the request that timed out.
            lost = httpx2.Request("POST", f"{manual.base_url}/batches")
            raise openai.APITimeoutError(request=lost)
        return batch

    monkeypatch.setattr(openai.resources.batches.Batches, "create", answer_lost_once)

    submitted = client.submit([chat_request(1)], metadata={})

    assert [batch.batch_id for batch in submitted] == calls  # found, not created again
    assert manual.stats()["batches_created"] == 1


def test_a_wrong_key_is_a_typed_error_without_the_key(manual: SimulatorServer) -> None:
    manual.configure(api_keys=["sk-the-right-key-123456"])
    with BatchClient(manual.base_url, TEST_API_KEY, timeout_s=10) as client:
        with pytest.raises(AuthenticationFailed) as refused:
            client.submit([chat_request(1)], metadata={})
        with pytest.raises(AuthenticationFailed):
            client.retrieve("batch_any")

    message = str(refused.value)
    assert manual.base_url in message and "OPENAI_API_KEY" in message
    assert "uploading batch input file 1 of 1" in message
    assert TEST_API_KEY not in message and TEST_API_KEY not in repr(refused.value.body)
    assert refused.value.status_code == 401
    copy = pickle.loads(pickle.dumps(refused.value))
    assert type(copy) is AuthenticationFailed and str(copy) == message
    assert manual.stats()["files_uploaded"] == 0


def test_quota_running_out_halfway_names_the_batches_already_created(
    manual: SimulatorServer, client: BatchClient
) -> None:
    created: list[SubmittedBatch] = []

    def out_of_credit_after_the_first(batch: SubmittedBatch) -> None:
        created.append(batch)
        manual.configure(insufficient_quota=True)

    with pytest.raises(QuotaExhausted) as exhausted:
        client.submit(
            [chat_request(i) for i in range(6)],
            metadata={},
            on_submitted=out_of_credit_after_the_first,
        )

    assert len(created) == 1  # recorded by the caller before the failure
    assert created[0].batch_id in str(exhausted.value)
    assert "Add credit" in str(exhausted.value) and manual.base_url in str(exhausted.value)


def test_a_dead_endpoint_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"  # nothing listens there any more
    client = BatchClient(base_url, TEST_API_KEY, timeout_s=5, max_retries=0)
    with pytest.raises(EndpointUnreachable, match="connection refused") as unreachable:
        client.retrieve("batch_any")
    client.close()
    assert base_url in str(unreachable.value) and TEST_API_KEY not in str(unreachable.value)


def test_a_remote_endpoint_is_refused_while_offline() -> None:
    with pytest.raises(UserError, match="LLM_ASSETS_OFFLINE"):
        BatchClient("https://api.openai.com/v1", TEST_API_KEY)
