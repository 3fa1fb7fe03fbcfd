"""The response ledger: a durable, content-addressed store of paid-for LLM responses.

Before calling the LLM an asset looks up every row's request key with `ResponseLedger.get_many`,
sends only the misses, and records each response through a `LedgerWriter` as it arrives. A crash
loses at most the calls in flight; a re-run pays only for rows not yet in the ledger.

Errors raised here extend the tree in `resources.errors`::

    LLMAssetsError
    └── LedgerError                  anything the ledger raises
        ├── LedgerConfigError        (also a UserError) fix the resource configuration
        └── LedgerUnavailableError   the ledger database cannot be opened or reached
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import dagster as dg
import pydantic_core
from pydantic import Field, PrivateAttr

from resources.errors import LLMAssetsError, UserError

logger = logging.getLogger(__name__)

POSTGRES_URL_ENV_VAR = "LLM_ASSETS_LEDGER_URL"


class LedgerError(LLMAssetsError):
    """Base class for every error raised by the response ledger."""


class LedgerConfigError(LedgerError, UserError):
    """The ledger is misconfigured; the message says which field to change."""


class LedgerUnavailableError(LedgerError):
    """The ledger database cannot be opened or reached."""


@dataclass(frozen=True)
class LedgerEntry:
    """One completed LLM call, as paid for and recorded by a Dagster run.

    Entries read from a backend hold ``response`` and ``request`` as JSON text and decode each on
    first access, so a bulk lookup does not pay to parse bodies the caller never reads. Either
    way the entry behaves as a plain frozen dataclass: it compares, copies and pickles by value.

    Attributes:
        key: sha256 hex digest of the canonical request; computed by the caller.
        response: The raw response body, as returned by the API.
        request: The canonical request body (model, messages, response_format, params). Never
            holds an API key.
        model: Model name reported by the API.
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
        cost_usd: Cost of the call in US dollars.
        latency_s: Wall-clock duration of the call in seconds.
        created_at: When the response arrived; must be timezone-aware (stored as UTC).
        run_id: Dagster run that paid for the call.
        asset_key: Slash-joined asset key path, e.g. ``"review_insights"``.
        partition_key: Partition the row belonged to, if any.
        task_version: Version of the task definition that built the request.

    Examples:
        .. code-block:: python

            entry = LedgerEntry(
                key=request_key,
                response=body,
                request=canonical_request,
                model=body["model"],
                input_tokens=body["usage"]["prompt_tokens"],
                output_tokens=body["usage"]["completion_tokens"],
                cost_usd=0.00042,
                latency_s=0.8,
                created_at=datetime.now(timezone.utc),
                run_id=context.run_id,
                asset_key="review_insights",
                partition_key=context.partition_key,
                task_version="v1",
            )
    """

    key: str
    response: dict[str, Any]
    request: dict[str, Any]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    created_at: datetime
    run_id: str
    asset_key: str
    partition_key: str | None
    task_version: str

    def __post_init__(self) -> None:
        if self.created_at.utcoffset() is None:
            raise ValueError(
                f"LedgerEntry.created_at must be timezone-aware (key {self.key}); "
                "use datetime.now(timezone.utc)"
            )

    @classmethod
    def from_json(
        cls,
        key: str,
        response_json: str,
        request_json: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_s: float,
        created_at: datetime,
        run_id: str,
        asset_key: str,
        partition_key: str | None,
        task_version: str,
    ) -> LedgerEntry:
        """Build an entry from stored JSON bodies, decoded on first access.

        Backends call this once per row, so it skips ``__init__``; ``created_at`` must already
        be timezone-aware.
        """
        entry = object.__new__(cls)
        object.__setattr__(
            entry,
            "__dict__",
            {
                "key": key,
                "_response_json": response_json,
                "_request_json": request_json,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": cost_usd,
                "latency_s": latency_s,
                "created_at": created_at,
                "run_id": run_id,
                "asset_key": asset_key,
                "partition_key": partition_key,
                "task_version": task_version,
            },
        )
        return entry

    def __getattr__(self, name: str) -> Any:
        # Python only gets here when `name` is not in the instance dict, i.e. for a body that
        # `from_json` left as text.
        raw = self.__dict__.get(f"_{name}_json") if name in _LAZY_BODIES else None
        if raw is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = pydantic_core.from_json(raw)
        object.__setattr__(self, name, value)
        # Dropped only after the parsed value is visible, so a racing thread finds one or both.
        self.__dict__.pop(f"_{name}_json", None)
        return value


_LAZY_BODIES = frozenset({"response", "request"})


class LedgerBackend(abc.ABC):
    """Storage behind the ledger. Implementations are safe across threads and processes."""

    @abc.abstractmethod
    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the stored entries for ``keys``; keys not in the ledger are absent."""

    @abc.abstractmethod
    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return the subset of ``keys`` present in the ledger, without loading the bodies."""

    @abc.abstractmethod
    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Store ``entries``; an existing key is left untouched. Returns how many were new."""

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry stored under ``key``, or None."""
        return self.get_many([key]).get(key)

    @abc.abstractmethod
    def count(self) -> int:
        """Return the number of entries in the ledger."""

    @abc.abstractmethod
    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total cost in USD)`` paid, optionally filtered by run and asset."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection; the backend cannot be used afterwards."""


ConnectionT = TypeVar("ConnectionT")

# Connections inherited across fork() must never be closed by the child: closing a PostgreSQL
# connection sends a terminate message on a socket the parent is still using.
_ABANDONED_AFTER_FORK: list[Any] = []


class ConnectionPool(Generic[ConnectionT]):
    """A small thread-safe, fork-aware pool; each connection is used by one thread at a time."""

    def __init__(
        self,
        connect: Callable[[], ConnectionT],
        close: Callable[[ConnectionT], None],
        *,
        max_idle: int = 8,
    ) -> None:
        self._connect = connect
        self._close = close
        self._max_idle = max_idle
        self._idle: list[ConnectionT] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[ConnectionT]:
        """Lend a connection; one that saw an exception is closed rather than reused."""
        with self._lock:
            if self._closed:
                raise LedgerError("the ledger backend is closed")
            if self._pid != os.getpid():
                _ABANDONED_AFTER_FORK.extend(self._idle)
                self._idle, self._pid = [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except BaseException:
            self._close(conn)
            raise
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        self._close(conn)

    def close(self) -> None:
        """Close idle connections now and lent ones when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                self._close(conn)


class LedgerWriter:
    """Records entries in the ledger as they arrive, batching those that arrive together.

    With ``max_delay_s=0`` (the default) `add` returns once its entry is committed, so a crash
    loses only the calls still in flight. Entries that other threads add while a write is under
    way are committed by that writer right after, up to ``batch_size`` per transaction.

    With ``max_delay_s > 0`` a background thread commits instead and `add` returns at once: use
    it when each commit is slow (a distant database) and throughput matters more than the few
    responses a crash may then lose. `add` blocks while ``batch_size`` entries are waiting or
    the oldest has waited ``max_delay_s``, and raises if the last background write failed.

    Closing the writer, also when its ``with`` block exits on an exception, writes what is left
    and raises if that fails. The writer may be shared by several threads.

    Attributes:
        written: Entries recorded in the ledger so far.
        inserted: Of those, entries that were new (the rest were already recorded).

    Examples:
        .. code-block:: python

            with ledger.writer() as writer:
                for entry in completed_calls():
                    writer.add(entry)
            context.log.info(f"recorded {writer.written} responses")
    """

    def __init__(
        self, backend: LedgerBackend | None, *, batch_size: int = 64, max_delay_s: float = 0.0
    ) -> None:
        """Create a writer; ``backend=None`` makes a writer that records nothing."""
        if batch_size < 1 or max_delay_s < 0:
            raise LedgerConfigError(
                f"LedgerWriter needs batch_size >= 1 and max_delay_s >= 0 "
                f"(got batch_size={batch_size}, max_delay_s={max_delay_s})"
            )
        self.batch_size = batch_size
        self.max_delay_s = max_delay_s
        self.written = 0
        self.inserted = 0
        self._backend = backend
        self._buffer: list[tuple[float, LedgerEntry]] = []  # (time added, entry)
        self._writing = False  # one thread at a time drains the buffer
        self._error: Exception | None = None
        self._state = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, entry: LedgerEntry) -> None:
        """Record ``entry``; see the class docstring for when it is committed."""
        if self._backend is None:
            return
        with self._state:
            if self._closed:
                raise LedgerError("LedgerWriter.add() called after the writer was closed")
            self._buffer.append((time.monotonic(), entry))
            if self.max_delay_s > 0:
                self._start_background_writer()
                self._state.notify_all()
                self._wait_while_backlog_is_full()
                return
            if self._writing:
                return  # the thread writing now drains the buffer before it stops
            self._writing = True
        self._drain()

    def flush(self) -> int:
        """Write everything added so far, in this thread; returns how many entries were new."""
        if self._backend is None:
            return 0
        with self._state:
            while self._writing:
                self._state.wait()
            self._writing = True
        return self._drain()

    def close(self) -> None:
        """Stop the background writer, if any, and write what is left. Idempotent."""
        with self._state:
            self._closed = True
            self._state.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _drain(self) -> int:
        """Commit batches until the buffer is empty; the caller has set ``_writing``."""
        backend = self._backend
        inserted_total = 0
        while True:
            with self._state:
                if not self._buffer or backend is None:
                    self._writing = False
                    self._state.notify_all()
                    return inserted_total
                batch = self._buffer[: self.batch_size]
                del self._buffer[: self.batch_size]
            try:
                inserted = backend.put_many([entry for _, entry in batch])
            except BaseException as exc:
                with self._state:
                    self._buffer[:0] = batch
                    self._writing = False
                    self._error = exc if isinstance(exc, Exception) else None
                    self._state.notify_all()
                raise
            with self._state:
                self.written += len(batch)
                self.inserted += inserted
                self._error = None
            inserted_total += inserted

    def _start_background_writer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_in_background, name="llm-assets-ledger-writer", daemon=True
            )
            self._thread.start()

    def _wait_while_backlog_is_full(self) -> None:
        while len(self._buffer) >= self.batch_size or (
            self._buffer and time.monotonic() - self._buffer[0][0] >= self.max_delay_s
        ):
            if self._error is not None:
                raise LedgerError(
                    f"the ledger writer is falling behind ({len(self._buffer)} entries waiting) "
                    f"and its last write failed: {self._error!r}"
                ) from self._error
            self._state.wait(0.1)

    def _write_in_background(self) -> None:
        while True:
            with self._state:
                while not self._closed and (self._writing or not self._buffer):
                    self._state.wait()
                if self._closed:
                    return  # close() writes the rest in the caller's thread, where errors surface
                self._writing = True
            try:
                self._drain()
            except Exception as exc:
                logger.warning("ledger write failed; retrying in %ss: %r", self.max_delay_s, exc)
                with self._state:
                    self._state.wait_for(lambda: self._closed, timeout=self.max_delay_s)


_BUILD_LOCK = threading.Lock()


class ResponseLedger(dg.ConfigurableResource):
    """Durable ledger of paid-for LLM responses, keyed by the sha256 of the canonical request.

    Look up all rows with `get_many` before calling the LLM, send only the misses, and record each
    response with `writer` as it arrives: no token is paid for twice and every row can be traced
    back to the run, asset and partition that paid for it. SQLite suits one host (several
    processes may write at once); PostgreSQL suits a shared deployment.

    Outside Dagster execution (a CLI, a notebook) construct it directly and call `get_backend`.

    Examples:
        .. code-block:: python

            import dagster as dg

            from resources.ledger import ResponseLedger


            @dg.asset
            def review_insights(ledger: ResponseLedger) -> dg.MaterializeResult:
                keys: list[str] = []  # sha256 of each row's canonical request
                done = ledger.get_many(keys)
                with ledger.writer() as writer:
                    for key in keys:
                        if key not in done:
                            ...  # call the LLM, then writer.add(LedgerEntry(key=key, ...))
                return dg.MaterializeResult(
                    metadata={"reused": len(done), "paid": writer.written}
                )


            defs = dg.Definitions(
                assets=[review_insights],
                resources={
                    "ledger": ResponseLedger(
                        backend="postgres", postgres_url=dg.EnvVar("LLM_ASSETS_LEDGER_URL")
                    )
                },
            )
    """

    backend: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        description="Where entries are stored: 'sqlite' (one host) or 'postgres' (shared).",
    )
    sqlite_path: str = Field(
        default=".dagster_home/ledger.sqlite",
        description="SQLite file; relative paths resolve against the working directory and the "
        "parent directory is created.",
    )
    postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql:// or postgresql+psycopg2://), required when "
        f"backend='postgres'. Pass dg.EnvVar('{POSTGRES_URL_ENV_VAR}'); it is never logged.",
    )
    postgres_schema: str = Field(
        default="llm_assets",
        description="PostgreSQL schema holding the 'responses' table; created if missing.",
    )
    enabled: bool = Field(
        default=True,
        description="False disables the ledger for debugging: no lookups, no writes, every call "
        "is paid for.",
    )

    _backend: LedgerBackend | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Open the backend (creating its table if needed) before the run uses it."""
        if self.enabled:
            self.get_backend()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the backend's connections."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def get_backend(self) -> LedgerBackend:
        """Return the backend, opening it on first use (also when ``enabled`` is False)."""
        if self._backend is None:
            with _BUILD_LOCK:
                if self._backend is None:
                    self._backend = self._build_backend()
        return self._backend

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the recorded entries for ``keys``; misses are absent."""
        return self.get_backend().get_many(keys) if self.enabled else {}

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return which of ``keys`` are recorded, without loading response bodies."""
        return self.get_backend().contains_many(keys) if self.enabled else set()

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Record ``entries`` (the first writer of a key wins); returns how many were new."""
        return self.get_backend().put_many(entries) if self.enabled else 0

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry recorded under ``key``, or None."""
        return self.get_backend().get(key) if self.enabled else None

    def count(self) -> int:
        """Return the number of recorded entries."""
        return self.get_backend().count() if self.enabled else 0

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total USD)`` paid, optionally for one run and/or asset."""
        if not self.enabled:
            return 0, 0.0
        return self.get_backend().spend(run_id=run_id, asset_key=asset_key)

    def writer(self, *, batch_size: int = 64, max_delay_s: float = 0.0) -> LedgerWriter:
        """Return a `LedgerWriter` for recording responses as they arrive; use it with ``with``."""
        backend = self.get_backend() if self.enabled else None
        return LedgerWriter(backend, batch_size=batch_size, max_delay_s=max_delay_s)

    def _build_backend(self) -> LedgerBackend:
        if self.backend == "sqlite":
            from resources.ledger_sqlite import SQLiteLedgerBackend

            return SQLiteLedgerBackend(Path(self.sqlite_path))
        from resources.ledger_postgres import PostgresLedgerBackend

        return PostgresLedgerBackend(self._resolve_postgres_url(), schema=self.postgres_schema)

    def _resolve_postgres_url(self) -> str:
        url: str | None = self.postgres_url
        # Constructed outside Dagster, the field still holds the EnvVar, i.e. the variable's name.
        if isinstance(url, dg.EnvVar):
            name = url.env_var_name
            url = url.get_value()
            if not url:
                raise LedgerConfigError(
                    f"environment variable {name} (ResponseLedger.postgres_url) is not set; "
                    f"export {name}=postgresql://user:password@host:5432/dbname"
                )
        if not url:
            raise LedgerConfigError(
                "ResponseLedger.postgres_url is required when backend='postgres'; set "
                f"postgres_url=dg.EnvVar('{POSTGRES_URL_ENV_VAR}') and export "
                f"{POSTGRES_URL_ENV_VAR}=postgresql://user:password@host:5432/dbname"
            )
        return url
