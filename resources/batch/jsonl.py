"""The Batch API's files: input JSONL written from requests, output JSONL read into lines.

OpenAI limits one batch input file to 50,000 requests, 200 MB and one model; `pack` splits a
submission into files that respect all three. Output and error files list one line per
request, in any order; `parse_line` reads one into a `BatchLine`, and `parse_request_line`
reads an input line back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from llm_assets.resources.errors import UserError
from llm_assets.resources.llm.types import ChatRequest

MAX_LINES_PER_FILE = 50_000
"""OpenAI's most requests per batch input file."""

MAX_BYTES_PER_FILE = 200 * 1024 * 1024
"""OpenAI's largest batch input file, in bytes."""

ENDPOINT: Final = "/v1/chat/completions"
"""The endpoint every line targets."""


@dataclass(frozen=True)
class BatchLine:
    """One request's outcome, read from a batch's output or error file.

    Attributes:
        custom_id: The request's ledger key.
        status_code: HTTP status the request got; ``None`` if it never ran (the batch expired
            or was cancelled first).
        body: The response body (an error body for a non-200), or ``None`` if it never ran.
        error_code: Why it failed (``batch_expired``, ``server_error``...), or ``None``.
        error_message: The provider's explanation of the failure, or ``None``.

    Examples:
        >>> line = BatchLine("k1", 200, {"choices": []}, None, None)
        >>> line.ok
        True
    """

    custom_id: str
    status_code: int | None
    body: dict[str, Any] | None
    error_code: str | None
    error_message: str | None

    @property
    def ok(self) -> bool:
        """True when the request was answered 200 with a body."""
        return self.status_code == 200 and self.body is not None


def request_line(request: ChatRequest) -> bytes:
    r"""One input-file line for ``request``, newline included.

    Examples:
        >>> request_line(ChatRequest("k1", {"model": "m"}, 1))
        b'{"custom_id":"k1","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}\n'
    """
    line = {"custom_id": request.key, "method": "POST", "url": ENDPOINT, "body": request.body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def pack(
    requests: Iterable[ChatRequest],
    *,
    max_lines: int = MAX_LINES_PER_FILE,
    max_bytes: int = MAX_BYTES_PER_FILE,
) -> list[tuple[list[str], bytes]]:
    """Split requests into batch input files: one model per file, both limits respected.

    A key seen twice is written once (equal keys are equal requests, and a batch refuses a
    repeated ``custom_id``). Files follow the order in which models first appear.

    Args:
        requests: The requests; each ``key`` becomes a line's ``custom_id``.
        max_lines: Most lines per file.
        max_bytes: Largest file, in bytes.

    Returns:
        ``(keys, file bytes)`` per file.

    Raises:
        UserError: One request alone is larger than ``max_bytes``.

    Examples:
        >>> reqs = [ChatRequest(f"k{i}", {"model": "m"}, 1) for i in range(5)]
        >>> [keys for keys, _ in pack(reqs, max_lines=2)]
        [['k0', 'k1'], ['k2', 'k3'], ['k4']]
    """
    if max_lines < 1 or max_bytes < 1:
        raise ValueError("max_lines and max_bytes must be at least 1")
    by_model: dict[str, list[tuple[str, bytes]]] = {}
    seen: set[str] = set()
    for request in requests:
        if request.key in seen:
            continue
        seen.add(request.key)
        line = request_line(request)
        if len(line) > max_bytes:
            raise UserError(
                f"request {request.key} is {len(line)} bytes as a batch line, more than the "
                f"{max_bytes} bytes a batch input file may hold; shorten its prompt or send "
                "it without the Batch API"
            )
        by_model.setdefault(str(request.body.get("model")), []).append((request.key, line))
    files: list[tuple[list[str], bytes]] = []
    for lines in by_model.values():
        keys: list[str] = []
        chunk: list[bytes] = []
        size = 0
        for key, line in lines:
            if chunk and (len(chunk) == max_lines or size + len(line) > max_bytes):
                files.append((keys, b"".join(chunk)))
                keys, chunk, size = [], [], 0
            keys.append(key)
            chunk.append(line)
            size += len(line)
        if chunk:
            files.append((keys, b"".join(chunk)))
    return files


def parse_line(text: str | bytes) -> BatchLine | None:
    """Read one line of an output or error file; ``None`` for a blank line.

    Raises:
        ValueError: The line is not a JSON object with a ``custom_id``.

    Examples:
        >>> parse_line('{"custom_id": "k1", "response": null, '
        ...            '"error": {"code": "batch_expired", "message": "too late"}}')
        BatchLine(custom_id='k1', status_code=None, body=None, error_code='batch_expired', error_message='too late')
    """  # noqa: E501
    if not text.strip():
        return None
    item = json.loads(text)
    if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
        raise ValueError("a batch result line must be a JSON object with a string custom_id")
    response = item.get("response") if isinstance(item.get("response"), dict) else None
    status = response.get("status_code") if response else None
    body = response.get("body") if response and isinstance(response.get("body"), dict) else None
    error = item.get("error") if isinstance(item.get("error"), dict) else None
    if error is None and status != 200 and body is not None:
        # A request that ran and failed carries its error in the response body.
        error = body.get("error") if isinstance(body.get("error"), dict) else None
    code = (error.get("code") or error.get("type")) if error else None
    if not code and status is not None and status != 200:
        code = f"http_{status}"
    message = error.get("message") if error else None
    return BatchLine(
        custom_id=item["custom_id"],
        status_code=int(status) if isinstance(status, int) else None,
        body=body,
        error_code=str(code) if code else None,
        error_message=str(message) if message else None,
    )


def parse_request_line(text: str | bytes) -> tuple[str, dict[str, Any]] | None:
    """Read one line of an input file into ``(custom_id, body)``; ``None`` for a blank line.

    Raises:
        ValueError: The line is not a JSON object with a string ``custom_id`` and a ``body``.

    Examples:
        >>> parse_request_line(request_line(ChatRequest("k1", {"model": "m"}, 1)))
        ('k1', {'model': 'm'})
    """
    if not text.strip():
        return None
    item = json.loads(text)
    if not (
        isinstance(item, dict)
        and isinstance(item.get("custom_id"), str)
        and isinstance(item.get("body"), dict)
    ):
        raise ValueError("a batch request line must be a JSON object with custom_id and body")
    return item["custom_id"], item["body"]
