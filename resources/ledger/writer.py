"""`LedgerWriter`: records responses as they arrive, so a crash loses only calls in flight."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

from llm_assets.resources.ledger.core import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
)

logger = logging.getLogger(__name__)


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
