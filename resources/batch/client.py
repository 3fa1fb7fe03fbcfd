"""The OpenAI Batch API through the official SDK: upload, create, poll, download, cancel.

Batch calls are few (one upload and one create per 50,000 requests, one poll per batch per
sensor tick), so a synchronous ``openai.OpenAI`` client with the SDK's own two retries is
enough. A failure that stops the work raises the project's typed errors, with the endpoint and
what to do, never the key: ``AuthenticationFailed`` (401/403), ``QuotaExhausted``
(``insufficient_quota``), ``EndpointUnreachable`` (connection refused, DNS, TLS, timeout) and
``ProviderError`` for any other refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import openai

from llm_assets.resources.batch.failures import provider_error
from llm_assets.resources.batch.jsonl import (
    ENDPOINT,
    MAX_BYTES_PER_FILE,
    MAX_LINES_PER_FILE,
    BatchLine,
    pack,
    parse_line,
    parse_request_line,
)
from llm_assets.resources.batch.status import BatchStatus, SubmittedBatch
from llm_assets.resources.errors import ProviderError
from llm_assets.resources.llm.failures import error_code
from llm_assets.resources.llm.offline import check_offline_guard
from llm_assets.resources.llm.types import ChatRequest
from llm_assets.resources.settings import mask_url

T = TypeVar("T")


def _retryable(exc: openai.APIError) -> bool:
    """Whether the SDK would retry ``exc``: a connection error, 408, 409, 429 or 5xx."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    if not isinstance(exc, openai.APIStatusError):
        return False
    status, code = exc.status_code, error_code(exc)
    return status in (408, 409) or (status == 429 and code != "insufficient_quota") or status >= 500


class BatchClient:
    """The Batch API of an OpenAI-compatible endpoint (OpenAI, or the bundled simulator).

    Args:
        base_url: Base URL of the API, ending in ``/v1``.
        api_key: The API key; never shown in a repr, log or error.
        timeout_s: Timeout of one HTTP call (uploads of 200 MB need a generous one).
        max_lines_per_file: Most requests per batch (OpenAI: 50,000).
        max_bytes_per_file: Largest input file in bytes (OpenAI: 200 MB).
        max_retries: The SDK's retries of a connection error, 408, 409, 429 or 5xx.

    Examples:
        .. code-block:: python

            import os

            import dagster as dg

            from llm_assets.resources.batch import BatchClient


            @dg.asset
            def submit_reviews() -> None:
                key = os.environ["OPENAI_API_KEY"]
                with BatchClient("https://api.openai.com/v1", key) as client:
                    requests = []  # the ChatRequests the ledger does not answer yet
                    client.submit(
                        requests,
                        metadata={"asset": "reviews"},
                        on_submitted=lambda batch: ...,  # record it with BatchStore.record
                    )


            defs = dg.Definitions(assets=[submit_reviews])
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 120.0,
        max_lines_per_file: int = MAX_LINES_PER_FILE,
        max_bytes_per_file: int = MAX_BYTES_PER_FILE,
        max_retries: int = 2,
    ) -> None:
        check_offline_guard(base_url)
        self.base_url = base_url
        self.max_lines_per_file = max_lines_per_file
        self.max_bytes_per_file = max_bytes_per_file
        self._api_key = api_key
        self._max_retries = max_retries
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries
        )
        self._once = self._client.with_options(max_retries=0)

    def __repr__(self) -> str:
        return f"BatchClient({mask_url(self.base_url)!r})"

    def __enter__(self) -> BatchClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def write_jsonl(self, requests: Sequence[ChatRequest]) -> list[bytes]:
        r"""The input files for ``requests``: one model per file, within both size limits.

        Examples:
            >>> client = BatchClient("http://127.0.0.1:1/v1", "sk-test", max_lines_per_file=2)
            >>> reqs = [ChatRequest(f"k{i}", {"model": "sim-small"}, 1) for i in range(3)]
            >>> [data.count(b"\n") for data in client.write_jsonl(reqs)]
            [2, 1]
        """
        return [data for _, data in self._pack(requests)]

    def _pack(self, requests: Sequence[ChatRequest]) -> list[tuple[list[str], bytes]]:
        return pack(requests, max_lines=self.max_lines_per_file, max_bytes=self.max_bytes_per_file)

    def submit(
        self,
        requests: Sequence[ChatRequest],
        metadata: Mapping[str, str],
        *,
        on_submitted: Callable[[SubmittedBatch], None] | None = None,
    ) -> list[SubmittedBatch]:
        """Upload the input files and create one batch per file.

        Args:
            requests: The requests to run; each ``key`` becomes a ``custom_id``.
            metadata: Up to 16 string pairs attached to every batch (OpenAI's limit).
            on_submitted: Called with each batch as soon as it exists, before the next file
                is uploaded: record it there, and a failure halfway loses no batch.

        Returns:
            The created batches, in file order.
        """
        submitted: list[SubmittedBatch] = []
        files = self._pack(requests)
        for number, (keys, data) in enumerate(files, 1):
            plural = "" if len(keys) == 1 else "s"
            part = f"batch input file {number} of {len(files)} ({len(keys)} request{plural})"
            try:
                uploaded = self._client.files.create(
                    file=(f"requests-{number}.jsonl", data), purpose="batch"
                )
            except openai.APIError as exc:
                self._raise(exc, f"uploading {part}", submitted)
            batch = self._create(uploaded.id, metadata, f"creating the batch of {part}", submitted)
            created = SubmittedBatch(batch.id, uploaded.id, keys, batch.status)
            submitted.append(created)
            if on_submitted is not None:
                on_submitted(created)
        return submitted

    def _create(
        self,
        input_file_id: str,
        metadata: Mapping[str, str],
        action: str,
        submitted: Sequence[SubmittedBatch],
    ) -> openai.types.Batch:
        """Create one batch, never two: before a retry, look for the one a lost answer made.

        The SDK would resend a create whose answer timed out, and OpenAI has no idempotency
        key for batches, so a slow answer could start the same file twice (and bill it twice).
        """
        for attempt in range(self._max_retries + 1):
            try:
                if attempt:
                    time.sleep(min(8.0, 0.5 * 2**attempt))
                    existing = self._find_batch(input_file_id)
                    if existing is not None:
                        return existing
                return self._once.batches.create(
                    input_file_id=input_file_id,
                    endpoint=ENDPOINT,
                    completion_window="24h",
                    metadata=dict(metadata),
                )
            except openai.APIError as exc:
                if attempt == self._max_retries or not _retryable(exc):
                    self._raise(exc, action, submitted)
        raise AssertionError("unreachable")

    def _find_batch(self, input_file_id: str, *, newest: int = 200) -> openai.types.Batch | None:
        """The batch running ``input_file_id`` among the ``newest`` batches, if any."""
        for seen, batch in enumerate(self._client.batches.list(limit=100)):
            if batch.input_file_id == input_file_id:
                return batch
            if seen + 1 >= newest:
                break
        return None

    def retrieve(self, batch_id: str) -> BatchStatus:
        """Return what the endpoint reports about ``batch_id`` now."""
        try:
            return BatchStatus.from_batch(self._client.batches.retrieve(batch_id))
        except openai.APIError as exc:
            self._raise(exc, f"reading batch {batch_id}")

    def cancel(self, batch_id: str) -> BatchStatus:
        """Ask the endpoint to cancel ``batch_id``; it is ``cancelling`` until it stops."""
        try:
            return BatchStatus.from_batch(self._client.batches.cancel(batch_id))
        except openai.APIError as exc:
            self._raise(exc, f"cancelling batch {batch_id}")

    def results(self, file_id: str) -> Iterator[BatchLine]:
        """Stream the lines of an output or error file, in the file's (arbitrary) order.

        Blank lines are skipped. The file is read as it downloads, so a file of 50,000 lines
        is never held in memory whole.

        Raises:
            ProviderError: The file cannot be downloaded, or a line is not a result line.
        """
        return self._read(file_id, parse_line, "a batch result line")

    def requests(self, file_id: str) -> dict[str, dict[str, Any]]:
        """The request bodies of a batch input file, by ``custom_id`` (the ledger key).

        Raises:
            ProviderError: The file cannot be downloaded, or a line is not a request line.
        """
        return dict(self._read(file_id, parse_request_line, "a batch request line"))

    def _read(self, file_id: str, parse: Callable[[str], T | None], what: str) -> Iterator[T]:
        try:
            with self._client.files.with_streaming_response.content(file_id) as response:
                for number, text in enumerate(response.iter_lines(), 1):
                    try:
                        item = parse(text)
                    except ValueError as exc:
                        raise ProviderError(
                            f"line {number} of file {file_id} from the Batch API at "
                            f"{mask_url(self.base_url)} is not {what} ({exc}); check that the "
                            "file id is the right one and the endpoint is OpenAI-compatible"
                        ) from None
                    if item is not None:
                        yield item
        except openai.APIError as exc:
            self._raise(exc, f"downloading file {file_id}")

    def _raise(
        self, exc: openai.APIError, action: str, submitted: Sequence[SubmittedBatch] = ()
    ) -> NoReturn:
        created = [batch.batch_id for batch in submitted]
        raise provider_error(
            exc,
            base_url=self.base_url,
            action=action,
            created=created,
            retries=self._max_retries,
            secret=self._api_key,
        ) from None
