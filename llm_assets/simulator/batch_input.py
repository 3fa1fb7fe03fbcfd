"""A batch's input, checked as OpenAI checks it: the create request and its JSONL file.

``new_job`` reads a ``POST /v1/batches`` body into a ``BatchJob``. The request itself is
refused at once (400) for a wrong endpoint or completion window, an unknown input file or bad
metadata; the file's problems (``invalid_json_line``, ``missing_required_parameter``,
``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``, ``empty_file``,
``too_many_tasks``) are kept on the job and fail the batch at its first step.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_assets.simulator import parsing
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.files import StoredFile
from llm_assets.simulator.parsing import InvalidRequest

ENDPOINT = "/v1/chat/completions"
_OUTCOMES = ("completed", "expired", "failed")
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


def new_job(
    config: SimulatorConfig, body: dict[str, Any], files: Mapping[str, StoredFile]
) -> BatchJob:
    """Read a ``POST /v1/batches`` body into a job, checking what OpenAI checks at once.

    Problems in the input file do not raise: they fail the batch at its first step.

    Args:
        config: Current knobs (defaults of the batch's outcome, pace and size limit).
        body: The request body.
        files: The uploaded files, by id.

    Raises:
        InvalidRequest: The request is refused with a 400 (endpoint, window, file, metadata).
    """
    for name, allowed in (("endpoint", ENDPOINT), ("completion_window", "24h")):
        if body.get(name) != allowed:
            raise InvalidRequest(f"'{name}' must be '{allowed}' in the simulator", name)
    file_id = body.get("input_file_id")
    source = files.get(file_id) if isinstance(file_id, str) else None
    if source is None or source.purpose != "batch":
        message = f"No batch input file with id {file_id!r}; upload one with purpose='batch'"
        raise InvalidRequest(message, "input_file_id")
    metadata = _metadata(body.get("metadata"))
    meta = metadata or {}
    outcome = meta.get("sim_outcome", config.batch_outcome)
    if outcome not in _OUTCOMES:
        raise InvalidRequest(f"metadata sim_outcome must be one of {_OUTCOMES}", "metadata")
    complete_after_s = _number(
        meta, "sim_complete_after_s", config.batch_auto_complete_s, upper=86_400
    )
    requests, problems = read_input(source.data, config.batch_max_lines)
    now, step_s = int(time.time()), complete_after_s / 3 or None
    models = [r["body"].get("model") for r in requests if isinstance(r["body"].get("model"), str)]
    batch: dict[str, Any] = {
        "id": f"batch_{uuid.uuid4().hex}",
        "object": "batch",
        "endpoint": ENDPOINT,
        "model": models[0] if models else None,
        "input_file_id": source.id,
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
        return [], [batch_error("empty_file", "The batch input file is empty.")]
    if len(numbered) > max_lines:
        message = (
            f"The batch input file has {len(numbered)} requests, more than the maximum of "
            f"{max_lines}; split the requests over several batches."
        )
        return [], [batch_error("too_many_tasks", message)]
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
            problems.append(batch_error(*problem, line=number))
            continue
        seen.add(item["custom_id"])
        requests.append({"custom_id": item["custom_id"], "body": item["body"]})
    return requests, problems[:_MAX_ERRORS_LISTED]


def batch_error(
    code: str, message: str, param: str | None = None, *, line: int | None = None
) -> dict[str, Any]:
    """An OpenAI ``BatchError``; ``line`` counts from 1."""
    return {"code": code, "message": message, "param": param, "line": line}


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
