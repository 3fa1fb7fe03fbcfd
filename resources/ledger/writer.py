"""`LedgerWriter`: records responses as they arrive, so a crash loses only calls in flight.

While the ledger is unreachable the writer keeps answers in memory and in its `LedgerJournal`
and retries in the background (`KeepsThroughOutage`, in ``outage``), so an outage of the
database costs no answer (see ``outage_limit_s``).
"""

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
    LedgerUnavailableError,
)
from llm_assets.resources.ledger.journal import LedgerJournal
from llm_assets.resources.ledger.outage import Backoff, KeepsThroughOutage

logger = logging.getLogger(__name__)


class LedgerWriter(KeepsThroughOutage):
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

    With ``outage_limit_s > 0`` and a ``journal``, a write that finds the ledger unreachable
    (`LedgerUnavailableError`) fails nothing: the entries are appended to the journal and kept
    in memory, `add` keeps journaling without touching the database, and a background thread
    retries with backoff. When the ledger is back the kept entries are written and the journal
    emptied. Once an outage has lasted ``outage_limit_s``, `gave_up` turns True (stop sending)
    and `close` raises `LedgerUnavailableError`; every entry stays in the journal, recorded by
    the next step that opens the ledger.

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
        self,
        backend: LedgerBackend | None,
        *,
        batch_size: int = 64,
        max_delay_s: float = 0.0,
        journal: LedgerJournal | None = None,
        outage_limit_s: float = 0.0,
    ) -> None:
        """Create a writer; ``backend=None`` makes a writer that records nothing."""
        if batch_size < 1 or max_delay_s < 0 or outage_limit_s < 0:
            raise LedgerConfigError(
                f"LedgerWriter needs batch_size >= 1, max_delay_s >= 0 and outage_limit_s >= 0 "
                f"(got batch_size={batch_size}, max_delay_s={max_delay_s}, "
                f"outage_limit_s={outage_limit_s})"
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
        self._journal = journal if outage_limit_s > 0 else None
        self.outage_limit_s = outage_limit_s
        #: Set while the journal holds entries the ledger lacks; the outage's start and pace.
        self._outage: Backoff | None = None
        self._gave_up: LedgerUnavailableError | None = None
        self._retrier: threading.Thread | None = None

    @property
    def gave_up(self) -> bool:
        """True once an outage outlasted ``outage_limit_s``: stop producing entries."""
        return self._gave_up is not None

    @property
    def kept(self) -> int:
        """Entries waiting for the ledger to come back (each one also in the journal)."""
        with self._state:
            return len(self._buffer) if self._outage is not None else 0

    def add(self, entry: LedgerEntry) -> None:
        """Record ``entry``; see the class docstring for when it is committed."""
        if self._backend is None:
            return
        with self._state:
            if self._closed:
                raise LedgerError("LedgerWriter.add() called after the writer was closed")
            self._buffer.append((time.monotonic(), entry))
            if self._outage is not None:
                assert self._journal is not None
                self._journal.append([entry])  # the retrier writes it when the ledger is back
                return
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
        """Stop the background writer, if any, and write what is left. Idempotent.

        During an outage it waits for the ledger (at most until ``outage_limit_s`` is up).

        Raises:
            LedgerUnavailableError: The outage outlasted ``outage_limit_s``; the message names
                the journal holding the entries.
        """
        with self._state:
            self._closed = True
            self._state.notify_all()
        if self._thread is not None:
            self._thread.join()
        while True:
            with self._state:
                while self._outage is not None and self._gave_up is None:
                    self._state.wait(0.5)
            if self._gave_up is not None:
                if self._journal is not None:
                    self._journal.close()
                raise self._gave_up
            self.flush()
            with self._state:
                if self._outage is None:  # else the last write met a new outage: wait it out
                    break
        if self._journal is not None:
            self._journal.close()

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
            except LedgerUnavailableError as exc:
                if self._journal is None:
                    self._put_back(batch, exc)
                    raise
                with self._state:
                    self._buffer[:0] = batch
                    self._writing = False
                    self._keep_during_outage(exc)
                    self._state.notify_all()
                return inserted_total
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
                if self._outage is not None and not self._buffer:
                    self._end_outage()
            inserted_total += inserted

    def _put_back(self, batch: list[tuple[float, LedgerEntry]], exc: Exception) -> None:
        with self._state:
            self._buffer[:0] = batch
            self._writing = False
            self._error = exc
            self._state.notify_all()

    def _start_background_writer(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_in_background, name="llm-assets-ledger-writer", daemon=True
            )
            self._thread.start()

    def _wait_while_backlog_is_full(self) -> None:
        while self._outage is None and (
            len(self._buffer) >= self.batch_size
            or (self._buffer and time.monotonic() - self._buffer[0][0] >= self.max_delay_s)
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
                while not self._closed and (
                    self._writing or not self._buffer or self._outage is not None
                ):
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
