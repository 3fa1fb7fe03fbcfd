r"""The OpenAI Files API of the simulator: uploads kept in memory, and their routes.

Routes: ``POST /v1/files`` (multipart ``file`` + ``purpose``), ``GET /v1/files``,
``GET /v1/files/{file_id}``, ``GET /v1/files/{file_id}/content`` and
``DELETE /v1/files/{file_id}``. A ``purpose="batch"`` upload larger than the knob
``batch_max_file_bytes`` (200 MB by default, OpenAI's limit) is refused with a 400. Batches
add their output and error files here with purpose ``batch_output``. ``POST
/_simulator/reset`` zeroes the upload counter but keeps the files, as it keeps the config.

Examples:
    >>> import io, openai
    >>> from llm_assets.simulator import SimulatorServer
    >>> with SimulatorServer() as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
    ...     uploaded = client.files.create(file=io.BytesIO(b"{}\n"), purpose="batch")
    ...     client.files.content(uploaded.id).text
    '{}\n'
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llm_assets.simulator import errors
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.responses import json_response

Authenticate = Callable[[Request], tuple[str, Response | None]]
"""``SimulatorApp._authenticate``: the bearer token, and the 401 to send if it is refused."""

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""Purposes a client may upload with (``batch_output`` is written by batches only)."""

_DISPOSITION_PARAM = re.compile(r'(\w+)="([^"]*)"')


class MultipartError(ValueError):
    """The upload is not a ``multipart/form-data`` body the simulator can read."""


@dataclass
class StoredFile:
    """One file held by the simulator."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_object(self) -> dict[str, Any]:
        """Return the OpenAI ``file`` object (``openai.types.FileObject``)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FilesAPI:
    """In-memory file storage plus the ``/v1/files`` routes.

    Args:
        config: Returns the simulator's current knobs (they change at run time).
        authenticate: Checks the bearer token of a request.
    """

    def __init__(self, config: Callable[[], SimulatorConfig], authenticate: Authenticate) -> None:
        self._config = config
        self._authenticate = authenticate
        self.files: dict[str, StoredFile] = {}
        self.uploaded = 0

    def routes(self) -> list[Route]:
        """Return the starlette routes of the Files API."""
        return [
            Route("/v1/files", self.upload, methods=["POST"]),
            Route("/v1/files", self.list_files, methods=["GET"]),
            Route("/v1/files/{file_id}", self.retrieve, methods=["GET"]),
            Route("/v1/files/{file_id}", self.delete, methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", self.content, methods=["GET"]),
        ]

    def add(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        """Store ``data`` as a new file.

        Args:
            filename: Name shown in the file object.
            purpose: OpenAI purpose, e.g. ``batch`` or ``batch_output``.
            data: The file's bytes.

        Returns:
            The stored file, with a fresh ``file-...`` id.
        """
        stored = StoredFile(
            f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data, int(time.time())
        )
        self.files[stored.id] = stored
        return stored

    async def upload(self, request: Request) -> Response:
        """``POST /v1/files``."""
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        try:
            fields, uploads = parse_multipart(
                request.headers.get("content-type", ""), await request.body()
            )
        except MultipartError as exc:
            return json_response(errors.invalid_request(str(exc)), 400)
        purpose = fields.get("purpose")
        if purpose not in PURPOSES:
            message = f"'purpose' must be one of: {', '.join(sorted(PURPOSES))}"
            return json_response(errors.invalid_request(message, "purpose"), 400)
        if "file" not in uploads:
            message = "Missing required parameter: 'file'; send it as a multipart file part."
            return json_response(errors.invalid_request(message, "file"), 400)
        filename, data = uploads["file"]
        limit = self._config().batch_max_file_bytes
        if purpose == "batch" and len(data) > limit:
            message = (
                f"File is too large: {len(data)} bytes, but batch input files can be at most "
                f"{limit} bytes. Split the requests over several batches."
            )
            body = errors.error_body(message, "invalid_request_error", "file_too_large", "file")
            return json_response(body, 400)
        self.uploaded += 1
        return json_response(self.add(filename, purpose, data).to_object())

    async def list_files(self, request: Request) -> Response:
        """``GET /v1/files``: newest first, optionally filtered by ``purpose``."""
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        purpose = request.query_params.get("purpose")
        data = [
            stored.to_object()
            for stored in reversed(self.files.values())
            if purpose is None or stored.purpose == purpose
        ]
        return json_response({"object": "list", "data": data, "has_more": False})

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/files/{file_id}``."""
        found = self._find(request)
        return found if isinstance(found, Response) else json_response(found.to_object())

    async def content(self, request: Request) -> Response:
        """``GET /v1/files/{file_id}/content``: the raw bytes."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        return Response(found.data, media_type="application/octet-stream")

    async def delete(self, request: Request) -> Response:
        """``DELETE /v1/files/{file_id}``."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        del self.files[found.id]
        return json_response({"id": found.id, "object": "file", "deleted": True})

    def _find(self, request: Request) -> StoredFile | Response:
        _, refused = self._authenticate(request)
        if refused is not None:
            return refused
        file_id = request.path_params["file_id"]
        stored = self.files.get(file_id)
        if stored is None:
            return json_response(
                errors.invalid_request(f"No such File object: {file_id}", "id"), 404
            )
        return stored


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    r"""Split a ``multipart/form-data`` body into text fields and file parts.

    The standard library has no multipart parser and starlette's needs ``python-multipart``,
    which the simulator does not depend on; uploads come from HTTP clients, so this strict
    reader of well-formed bodies is enough.

    Args:
        content_type: The request's ``Content-Type`` header, with its ``boundary``.
        body: The request body.

    Returns:
        ``(fields, files)``: text fields by name, and ``(filename, bytes)`` by name.

    Raises:
        MultipartError: If the body is not multipart or has no closing boundary.

    Examples:
        >>> body = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--b--'
        >>> parse_multipart("multipart/form-data; boundary=b", body)
        ({'purpose': 'batch'}, {})
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or match is None:
        raise MultipartError("upload files as multipart/form-data with a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = body.split(delimiter)
    if len(parts) < 3 or not parts[-1].startswith(b"--"):
        raise MultipartError("the multipart body has no closing boundary")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in parts[1:-1]:
        head, separator, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise MultipartError("a multipart part has no header/body separator")
        data = data.removesuffix(b"\r\n")
        params: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                params = dict(_DISPOSITION_PARAM.findall(line))
        name = params.get("name")
        if name is None:
            continue
        if "filename" in params:
            files[name] = (params["filename"], data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files
