"""The OpenAI Batch API of the simulator, on a clock that tests can drive.

Routes: ``POST /v1/batches``, ``GET /v1/batches`` (``limit``, ``after``; newest first),
``GET /v1/batches/{batch_id}``, ``POST /v1/batches/{batch_id}/cancel`` and the control call
``POST /_simulator/batches/advance``. Only the ``/v1/chat/completions`` endpoint is served.

Progression: ``validating -> in_progress -> finalizing -> completed``, one step per third of
``batch_auto_complete_s`` (knob, 3 s by default; metadata ``sim_complete_after_s`` overrides
it per batch), evaluated whenever a batch route is called. An invalid input file makes the
first step end in ``failed``, with ``errors`` as OpenAI reports them (``batch_input`` checks
the file). A cancelled batch is ``cancelling`` until its next step, then ``cancelled``. For
deterministic tests set ``batch_auto_complete_s=0`` (only ``advance`` moves batches) and post
to ``advance``, or call ``SimulatorServer.advance_batches``: ``{}`` moves every live batch one
step, ``{"to_end": true}`` to its end, ``{"batch_id": ..., "steps": 2}`` one batch two steps.

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
    >>> import io, json, openai
    >>> from llm_assets.simulator import SimulatorConfig, SimulatorServer
    >>> line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
    ...         "body": {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}}
    >>> with SimulatorServer(SimulatorConfig(batch_auto_complete_s=0)) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
    ...     source = client.files.create(file=io.BytesIO(json.dumps(line).encode()),
    ...                                  purpose="batch")
    ...     batch = client.batches.create(input_file_id=source.id, completion_window="24h",
    ...                                   endpoint="/v1/chat/completions")
    ...     _ = sim.advance_batches(to_end=True)
    ...     client.batches.retrieve(batch.id).request_counts
    BatchRequestCounts(completed=1, failed=0, total=1)
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_assets.simulator import errors, parsing
from llm_assets.simulator.batch_input import BatchJob, batch_error, new_job
from llm_assets.simulator.chat import answer_chat
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.files import Authenticate, FilesAPI
from llm_assets.simulator.parsing import InvalidRequest
from llm_assets.simulator.responses import json_response

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
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
            job = new_job(config, body, self.files.files)
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
                [batch_error("simulated_failure", "Failed on purpose (sim_outcome=failed).")]
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


def _jsonl(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n"
