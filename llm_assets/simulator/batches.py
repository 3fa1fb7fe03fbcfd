"""The OpenAI Batch API of the simulator, on a clock that tests can drive.

Routes: ``POST /v1/batches``, ``GET /v1/batches`` (``limit``, ``after``; newest first),
``GET /v1/batches/{batch_id}``, ``POST /v1/batches/{batch_id}/cancel`` and the control call
``POST /_simulator/batches/advance``. Only the ``/v1/chat/completions`` endpoint is served.

Progression: ``validating -> in_progress -> finalizing -> completed``, one step per third of
``batch_auto_complete_s`` (knob, 3 s by default; metadata ``sim_complete_after_s`` overrides
it per batch), evaluated whenever a batch route is called. An invalid input file
makes the first step end in ``failed``, with ``errors`` as OpenAI reports them
(``invalid_json_line``, ``missing_required_parameter``, ``duplicate_custom_id``,
``url_mismatch``, ``model_mismatch``, ``empty_file``, ``too_many_tasks``). A cancelled batch
is ``cancelling`` until its next step, then ``cancelled``. For deterministic tests set
``batch_auto_complete_s=0`` (only ``advance`` moves batches) and post to ``advance``: ``{}``
moves every live batch one step, ``{"to_end": true}`` to its end, ``{"batch_id": ...,
"steps": 2}`` one batch two steps.

Outcomes, per batch through ``metadata`` (string values, as OpenAI requires) or for every batch
through the config: ``sim_outcome`` / ``batch_outcome`` (``completed``, ``expired``,
``failed``); ``sim_line_error_rate`` / ``batch_line_error_rate``, the fraction of executed
lines answered 500 (exactly ``round(rate * lines)``, chosen by ``seed``);
``sim_partial_fraction`` / ``batch_partial_fraction``, the fraction of lines executed when a
batch expires or is cancelled in progress; the rest are in the error file with code
``batch_expired`` / ``batch_cancelled`` and count in neither ``completed`` nor ``failed``.
Knobs and metadata are read when the batch is created. Markers like ``[[sim:503]]`` in a
line's prompt apply to that line (every time; ``disconnect`` becomes a 500, ``slow`` does
nothing); a body the online endpoint would refuse gets its 400 in the error file.

Lines are answered like ``POST /v1/chat/completions`` (same content, same ``usage``) but are
not online requests: ``/_simulator/stats`` counts them in ``batch_lines``,
``batch_prompt_tokens`` and ``batch_completion_tokens``, never in ``chat_completions``.
Successful lines go to the output file in shuffled order. ``/_simulator/reset`` zeroes the
counters and keeps batches and files.

Examples:
    >>> import io, json, openai, urllib.request
    >>> from llm_assets.simulator import SimulatorConfig, SimulatorServer
    >>> line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
    ...         "body": {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}}
    >>> with SimulatorServer(SimulatorConfig(batch_auto_complete_s=0)) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
    ...     source = client.files.create(file=io.BytesIO(json.dumps(line).encode()),
    ...                                  purpose="batch")
    ...     batch = client.batches.create(input_file_id=source.id, completion_window="24h",
    ...                                   endpoint="/v1/chat/completions")
    ...     advance = urllib.request.Request(
    ...         f"{sim.url}/_simulator/batches/advance", data=b'{"to_end": true}', method="POST")
    ...     _ = urllib.request.urlopen(advance).read()
    ...     client.batches.retrieve(batch.id).request_counts
    BatchRequestCounts(completed=1, failed=0, total=1)
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_assets.simulator import errors, parsing, responses
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.content import ResponseFormatError, build_content, finish_answer
from llm_assets.simulator.faults import MarkerError, find_marker
from llm_assets.simulator.files import Authenticate, FilesAPI
from llm_assets.simulator.parsing import InvalidRequest
from llm_assets.simulator.responses import json_response
from llm_assets.simulator.tokens import estimate_prompt_tokens, estimate_tokens

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_OUTCOMES = ("completed", "expired", "failed")
_UNFINISHED = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}
_MAX_ERRORS_LISTED = 100


@dataclass
class BatchJob:
    """One batch: its OpenAI object plus what the simulator needs to run it."""

    data: dict[str, Any]
    requests: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    outcome: str
    line_error_rate: float
    partial_fraction: float
    step_s: float | None
    next_step_at: float | None
    seed: str
    cancelled_from: str | None = None


class BatchesAPI:
    """The ``/v1/batches`` and ``/v1/files`` routes and their in-memory state.

    Args:
        config: Returns the simulator's current knobs.
        authenticate: Checks the bearer token of a request.
    """

    def __init__(self, config: Callable[[], SimulatorConfig], authenticate: Authenticate) -> None:
        self._config = config
        self._authenticate = authenticate
        self.files = FilesAPI(config, authenticate)
        self.jobs: dict[str, BatchJob] = {}
        self.reset_counters()

    def reset_counters(self) -> None:
        """Zero the batch and upload counters; batches and files are kept."""
        self.files.uploaded = 0
        self.created = self.lines = self.prompt_tokens = self.completion_tokens = 0

    def stats(self) -> dict[str, int]:
        """Return the counters merged into ``GET /_simulator/stats``."""
        return {
            "batches_created": self.created,
            "batch_lines": self.lines,
            "batch_prompt_tokens": self.prompt_tokens,
            "batch_completion_tokens": self.completion_tokens,
            "files_uploaded": self.files.uploaded,
        }

    def routes(self) -> list[Route]:
        """Return the starlette routes of the Files and Batch APIs."""
        return [
            *self.files.routes(),
            Route("/v1/batches", self.create, methods=["POST"]),
            Route("/v1/batches", self.list_batches, methods=["GET"]),
            Route("/v1/batches/{batch_id}", self.retrieve, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
            Route("/_simulator/batches/advance", self.advance, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        """``POST /v1/batches``."""
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        config = self._config()
        try:
            body = parsing.parse_body(await request.body())
            for name, allowed in (("endpoint", ENDPOINT), ("completion_window", "24h")):
                if body.get(name) != allowed:
                    raise InvalidRequest(f"'{name}' must be '{allowed}' in the simulator", name)
            file_id = body.get("input_file_id")
            source = self.files.files.get(file_id) if isinstance(file_id, str) else None
            if source is None or source.purpose != "batch":
                message = (
                    f"No batch input file with id {file_id!r}; upload one with purpose='batch'"
                )
                raise InvalidRequest(message, "input_file_id")
            metadata = _metadata(body.get("metadata"))
            job = _new_job(config, source.id, source.data, metadata)
        except InvalidRequest as exc:
            return json_response(errors.invalid_request(str(exc), exc.param), 400)
        if config.insufficient_quota:
            return json_response(errors.insufficient_quota(), 429)
        self.jobs[job.data["id"]] = job
        self.created += 1
        return json_response(job.data)

    async def list_batches(self, request: Request) -> Response:
        """``GET /v1/batches``: newest first, ``limit`` (1-100, default 20) after ``after``."""
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        self._tick()
        limit = request.query_params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return json_response(errors.invalid_request("'limit' must be 1 to 100", "limit"), 400)
        ids = list(reversed(self.jobs))
        after = request.query_params.get("after")
        start = 0 if after is None else (ids.index(after) + 1 if after in ids else len(ids))
        page = ids[start : start + int(limit)]
        return json_response(
            {
                "object": "list",
                "data": [self.jobs[batch_id].data for batch_id in page],
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
                "has_more": start + len(page) < len(ids),
            }
        )

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/batches/{batch_id}``."""
        found = self._find(request)
        return found if isinstance(found, Response) else json_response(found.data)

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/batches/{batch_id}/cancel``: ``cancelling`` now, ``cancelled`` next step."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        status = found.data["status"]
        if status in TERMINAL or status == "cancelling":
            message = f"Cannot cancel a batch with status '{status}'."
            return json_response(errors.invalid_request(message), 409)
        found.cancelled_from = status
        found.data.update(status="cancelling", cancelling_at=int(time.time()))
        if found.step_s is not None:
            found.next_step_at = time.monotonic() + found.step_s
        return json_response(found.data)

    async def advance(self, request: Request) -> Response:
        """``POST /_simulator/batches/advance``: ``{"batch_id"?, "steps"?, "to_end"?}``."""
        try:
            body = parsing.parse_body(await request.body() or b"{}")
        except InvalidRequest as exc:
            return json_response(errors.invalid_request(str(exc)), 400)
        steps, batch_id = body.get("steps", 1), body.get("batch_id")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            return json_response(errors.invalid_request("'steps' must be >= 1", "steps"), 400)
        if batch_id is not None and batch_id not in self.jobs:
            return json_response(errors.invalid_request(f"No batch {batch_id!r}", "batch_id"), 404)
        self._tick()
        live = [job for job in self.jobs.values() if job.data["status"] not in TERMINAL]
        jobs = [self.jobs[batch_id]] if batch_id else live
        now = time.monotonic()
        for job in jobs:
            for _ in range(4 if body.get("to_end") else steps):
                if job.data["status"] in TERMINAL:
                    break
                self._step(job)
            if job.step_s is not None:
                job.next_step_at = now + job.step_s
        return json_response({"object": "list", "data": [job.data for job in jobs]})

    def _find(self, request: Request) -> BatchJob | Response:
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        self._tick()
        batch_id = request.path_params["batch_id"]
        job = self.jobs.get(batch_id)
        if job is None:
            message = f"No batch found with id '{batch_id}'."
            return json_response(errors.invalid_request(message, "batch_id"), 404)
        return job

    def _tick(self) -> None:
        """Take every step that auto-progression made due by now."""
        now = time.monotonic()
        for job in self.jobs.values():
            while (
                job.next_step_at is not None
                and job.step_s is not None
                and now >= job.next_step_at
                and job.data["status"] not in TERMINAL
            ):
                self._step(job)
                job.next_step_at += job.step_s

    def _step(self, job: BatchJob) -> None:
        data, now = job.data, int(time.time())
        status = data["status"]
        if status == "validating":
            problems = job.problems or (
                [_problem("simulated_failure", "Failed on purpose (sim_outcome=failed).")]
                if job.outcome == "failed"
                else []
            )
            if problems:
                errors_list = {"object": "list", "data": problems}
                data.update(status="failed", failed_at=now, errors=errors_list)
            else:
                counts = {"total": len(job.requests), "completed": 0, "failed": 0}
                data.update(status="in_progress", in_progress_at=now, request_counts=counts)
        elif status == "in_progress" and job.outcome == "expired":
            self._finish(job, "expired", job.partial_fraction)
        elif status == "in_progress":
            data.update(status="finalizing", finalizing_at=now)
        elif status == "finalizing":
            self._finish(job, "completed", 1.0)
        elif status == "cancelling":
            done = {"in_progress": job.partial_fraction, "finalizing": 1.0}
            self._finish(job, "cancelled", done.get(job.cancelled_from or "", 0.0))

    def _finish(self, job: BatchJob, status: str, done_fraction: float) -> None:
        """Answer the executed lines and write the output and error files."""
        rng, count = random.Random(job.seed), len(job.requests)
        executed = set(rng.sample(range(count), round(done_fraction * count)))
        broken = set(rng.sample(sorted(executed), round(job.line_error_rate * len(executed))))
        order = list(range(count))
        rng.shuffle(order)
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        prompt_total = completion_total = 0
        for index in order:
            request = job.requests[index]
            line: dict[str, Any] = {"id": f"batch_req_{uuid.uuid4().hex}"}
            line.update(custom_id=request["custom_id"], response=None, error=None)
            if index not in executed:
                code, message = _UNFINISHED[status]
                line["error"] = {"code": code, "message": message}
                failures.append(line)
                continue
            request_id = f"req_{uuid.uuid4().hex}"
            if index in broken:
                http_status, body, prompt, completion = 500, errors.server_error(500), 0, 0
            else:
                http_status, body, prompt, completion = answer_chat(
                    request["body"], self._config(), request_id
                )
            line["response"] = {"status_code": http_status, "request_id": request_id, "body": body}
            (outputs if http_status == 200 else failures).append(line)
            prompt_total, completion_total = prompt_total + prompt, completion_total + completion
        self.lines += len(executed)
        self.prompt_tokens += prompt_total
        self.completion_tokens += completion_total
        data = job.data
        for key, lines in (("output_file_id", outputs), ("error_file_id", failures)):
            if lines:
                text = "".join(_jsonl(line) for line in lines)
                name = f"{data['id']}_{key.removesuffix('_file_id')}.jsonl"
                data[key] = self.files.add(name, "batch_output", text.encode()).id
        failed = sum(1 for line in failures if line["response"] is not None)
        data.update({"status": status, f"{status}_at": int(time.time())})
        data["request_counts"] = {"total": count, "completed": len(outputs), "failed": failed}
        data["usage"] = {
            "input_tokens": prompt_total,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion_total,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_total + completion_total,
        }


def answer_chat(
    body: dict[str, Any], config: SimulatorConfig, request_id: str
) -> tuple[int, dict[str, Any], int, int]:
    """Answer one chat request exactly as ``POST /v1/chat/completions`` would, minus admission.

    No rate limit, latency, random fault or counter applies; a ``[[sim:NAME]]`` marker does.

    Args:
        body: The request body of one batch line.
        config: Current knobs (context windows).
        request_id: The line's request id; the completion id derives from it.

    Returns:
        ``(status_code, response_body, prompt_tokens, completion_tokens)``; tokens are 0
        unless the status is 200.
    """
    try:
        model = parsing.require_model(body)
        messages = parsing.chat_messages(body)
        max_tokens = parsing.completion_budget(body)
        user_text = parsing.last_user_text(messages)
        marker = find_marker(user_text)
        response_format = body.get("response_format")
        content_rng = random.Random(parsing.digest([model, messages, response_format]))
        content = build_content(response_format, user_text, content_rng)
    except (InvalidRequest, MarkerError, ResponseFormatError) as exc:
        param = getattr(exc, "param", None) or (
            "response_format" if isinstance(exc, ResponseFormatError) else "messages"
        )
        return 400, errors.invalid_request(str(exc), param), 0, 0
    fault = marker.name if marker is not None else None
    prompt_tokens = estimate_prompt_tokens(messages)
    window = config.context_window_for(model)
    if fault == "context_length" or prompt_tokens + (max_tokens or 0) > window:
        asked = window + 1 if fault == "context_length" else prompt_tokens
        error = errors.context_length_exceeded(window, asked, 0 if fault else max_tokens or 0)
        return 400, error, 0, 0
    if fault in ("500", "503", "disconnect"):
        status = 503 if fault == "503" else 500
        return status, errors.server_error(status), 0, 0
    answer = finish_answer(content, fault, max_tokens)
    completion_tokens = estimate_tokens(answer.content or answer.refusal or "")
    reply = responses.chat_completion(request_id, model, answer, prompt_tokens, completion_tokens)
    return 200, reply, prompt_tokens, completion_tokens


def read_input(data: bytes, max_lines: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validate a batch input file as OpenAI does before running it.

    Args:
        data: The JSONL file; blank lines are skipped, line numbers count from 1.
        max_lines: Most requests allowed (knob ``batch_max_lines``).

    Returns:
        ``(requests, problems)``: ``{"custom_id", "body"}`` per valid line, and OpenAI
        ``BatchError`` dicts (at most 100); any problem fails the batch.

    Examples:
        >>> read_input(b'{"custom_id": "a"}', 10)[1][0]["message"]
        "Missing required parameter: 'method'."
    """
    numbered = [
        (number, text)
        for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1)
        if text.strip()
    ]
    if not numbered:
        return [], [_problem("empty_file", "The batch input file is empty.")]
    if len(numbered) > max_lines:
        message = (
            f"The batch input file has {len(numbered)} requests, more than the maximum of "
            f"{max_lines}; split the requests over several batches."
        )
        return [], [_problem("too_many_tasks", message)]
    requests: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: list[str] = []
    for number, text in numbered:
        try:
            item = json.loads(text)
        except ValueError:
            item = None
        problem = _check_line(item, seen, models)
        if problem is not None:
            problems.append(_problem(*problem, line=number))
            continue
        seen.add(item["custom_id"])
        requests.append({"custom_id": item["custom_id"], "body": item["body"]})
    return requests, problems[:_MAX_ERRORS_LISTED]


def _check_line(item: Any, seen: set[str], models: list[str]) -> tuple[str, ...] | None:
    """Return ``(code, message[, param])`` for an invalid line, else None."""
    if not isinstance(item, dict):
        return "invalid_json_line", "This line is not parseable as valid JSON."
    for name in ("custom_id", "method", "url", "body"):
        if name not in item:
            return "missing_required_parameter", f"Missing required parameter: '{name}'.", name
    custom_id, body = item["custom_id"], item["body"]
    if not isinstance(custom_id, str) or not custom_id:
        return "invalid_value", "'custom_id' must be a non-empty string.", "custom_id"
    if custom_id in seen:
        message = (
            "The custom_id for this request is a duplicate of another request. The custom_id "
            "parameter must be unique for each request in a batch."
        )
        return "duplicate_custom_id", message, "custom_id"
    if item["method"] != "POST":
        return "invalid_value", "Only the POST method is supported in a batch.", "method"
    if item["url"] != ENDPOINT:
        message = f"The provided URL for this request does not match the batch endpoint {ENDPOINT}."
        return "url_mismatch", message, "url"
    if not isinstance(body, dict):
        return "invalid_value", "'body' must be a JSON object.", "body"
    model = body.get("model")
    if isinstance(model, str):
        if not models:
            models.append(model)
        if model != models[0]:
            message = f"Model '{model}' differs from '{models[0]}'; use one model per batch."
            return "model_mismatch", message, "body.model"
    return None


def _jsonl(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"


def _problem(
    code: str, message: str, param: str | None = None, *, line: int | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and len(value) <= 16
        and all(isinstance(k, str) and len(k) <= 64 for k in value)
        and all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    ):
        message = "'metadata' must map at most 16 keys (<= 64 chars) to strings (<= 512 chars)"
        raise InvalidRequest(message, "metadata")
    return value


def _number(metadata: dict[str, str], key: str, default: float, upper: float = 1.0) -> float:
    if key not in metadata:
        return default
    try:
        value = float(metadata[key])
    except ValueError:
        value = -1.0
    if not 0 <= value <= upper:
        raise InvalidRequest(f"metadata {key} must be a number from 0 to {upper:g}", "metadata")
    return value


def _new_job(
    config: SimulatorConfig, file_id: str, data: bytes, metadata: dict[str, str] | None
) -> BatchJob:
    meta = metadata or {}
    outcome = meta.get("sim_outcome", config.batch_outcome)
    if outcome not in _OUTCOMES:
        raise InvalidRequest(f"metadata sim_outcome must be one of {_OUTCOMES}", "metadata")
    complete_after_s = _number(
        meta, "sim_complete_after_s", config.batch_auto_complete_s, upper=86_400
    )
    requests, problems = read_input(data, config.batch_max_lines)
    now, step_s = int(time.time()), complete_after_s / 3 or None
    models = [r["body"].get("model") for r in requests if isinstance(r["body"].get("model"), str)]
    batch: dict[str, Any] = {
        "id": f"batch_{uuid.uuid4().hex}",
        "object": "batch",
        "endpoint": ENDPOINT,
        "model": models[0] if models else None,
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "errors": None,
        "created_at": now,
        "expires_at": now + 86_400,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": metadata,
        "usage": None,
    }
    for stage in ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling"):
        batch[f"{stage}_at"] = None
    batch["cancelled_at"] = None
    return BatchJob(
        data=batch,
        requests=requests,
        problems=problems,
        outcome=outcome,
        line_error_rate=_number(meta, "sim_line_error_rate", config.batch_line_error_rate),
        partial_fraction=_number(meta, "sim_partial_fraction", config.batch_partial_fraction),
        step_s=step_s,
        next_step_at=None if step_s is None else time.monotonic() + step_s,
        seed=parsing.digest([config.seed, [r["custom_id"] for r in requests]]),
    )
