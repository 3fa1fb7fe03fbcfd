"""Riding out a ledger outage: retry with backoff until the database is back or time is up.

A restart of the ledger's database takes a few seconds and a managed failover up to a minute;
neither should fail a step that is paying for answers. `wait_out` retries one ledger call
(a lookup, a claim) while it raises `LedgerUnavailableError`, and `Backoff` paces the
`LedgerWriter`'s retries of the answers it keeps meanwhile, which `KeepsThroughOutage` journals
and retries for the writer. Past ``limit_s`` the error stands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from llm_assets.resources.ledger.core import LedgerEntry, LedgerUnavailableError
from llm_assets.resources.ledger.journal import LedgerJournal

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE_S = 0.1
LONGEST_PAUSE_S = 2.0


class Backoff:
    """Pauses that double from ``FIRST_PAUSE_S`` to ``LONGEST_PAUSE_S``, within a deadline.

    Examples:
        >>> backoff = Backoff(limit_s=60)
        >>> [round(backoff.next_pause(), 1) for _ in range(7)]
        [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    """

    def __init__(self, limit_s: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + limit_s
        self._pause = FIRST_PAUSE_S

    @property
    def elapsed_s(self) -> float:
        """Seconds since the outage began."""
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self.deadline

    def next_pause(self) -> float:
        """How long to wait before the next try (never past the deadline)."""
        pause = min(self._pause, max(0.0, self.deadline - time.monotonic()))
        self._pause = min(self._pause * 2, LONGEST_PAUSE_S)
        return pause


def wait_out(call: Callable[[], T], *, limit_s: float, what: str) -> T:
    """Return ``call()``, retrying it while the ledger is unavailable, for up to ``limit_s``.

    Args:
        call: One ledger operation, safe to run again (a lookup, a claim).
        limit_s: How long an outage may last; 0 tries once.
        what: What the call does, for the log ("look up 600 requests").

    Raises:
        LedgerUnavailableError: The ledger stayed unreachable for ``limit_s``.

    Examples:
        >>> wait_out(lambda: 42, limit_s=60, what="answer the question")
        42
    """
    backoff: Backoff | None = None
    while True:
        try:
            result = call()
        except LedgerUnavailableError as exc:
            if backoff is None:
                backoff = Backoff(limit_s)
                logger.warning(
                    "the ledger is unreachable; retrying to %s for up to %ss: %s",
                    what,
                    limit_s,
                    exc,
                )
            if backoff.expired:
                raise LedgerUnavailableError(
                    f"the ledger stayed unreachable for {backoff.elapsed_s:.0f}s (outage_limit_s="
                    f"{limit_s:g}) while trying to {what}: {exc}. Nothing was lost; bring the "
                    "database back (or raise outage_limit_s) and re-materialize"
                ) from exc
            time.sleep(backoff.next_pause())
            continue
        if backoff is not None:
            logger.warning("the ledger is reachable again after %.1fs", backoff.elapsed_s)
        return result


class KeepsThroughOutage:
    """The `LedgerWriter`'s side of an outage: journal what it holds, retry, give up in time.

    A write that finds the ledger unreachable keeps the writer's buffer in its journal and starts
    a thread that retries with `Backoff`; once the outage outlasts ``outage_limit_s`` the writer
    gives up. The writer owns the state below and ``_drain``, which writes its buffer.
    """

    outage_limit_s: float
    _state: threading.Condition
    _buffer: list[tuple[float, LedgerEntry]]
    _writing: bool
    _journal: LedgerJournal | None
    _outage: Backoff | None
    _gave_up: LedgerUnavailableError | None
    _retrier: threading.Thread | None

    def _drain(self) -> int:
        raise NotImplementedError

    def _keep_during_outage(self, exc: LedgerUnavailableError) -> None:
        """Journals what the buffer holds and starts retrying; the caller holds the lock."""
        assert self._journal is not None
        if self._outage is None:
            self._outage = Backoff(self.outage_limit_s)
            self._journal.append(entry for _, entry in self._buffer)
            logger.warning(
                "the ledger is unreachable; keeping %d answers in %s and retrying for up to "
                "%ss: %s",
                len(self._buffer),
                self._journal.path,
                self.outage_limit_s,
                exc,
            )
        if self._outage.expired and self._gave_up is None:
            self._gave_up = LedgerUnavailableError(
                f"the ledger stayed unreachable for {self._outage.elapsed_s:.0f}s "
                f"(outage_limit_s={self.outage_limit_s:g}): {exc}. The {len(self._buffer)} "
                f"answers paid meanwhile are kept in {self._journal.path} and recorded by the "
                "next step that opens the ledger; re-materialize once the database is back to "
                "pay only for the rows never answered"
            )
        if self._retrier is None and self._gave_up is None:
            self._retrier = threading.Thread(
                target=self._retry, name="llm-assets-ledger-retry", daemon=True
            )
            self._retrier.start()

    def _end_outage(self) -> None:
        """The ledger holds every kept entry again; the caller holds the lock."""
        assert self._journal is not None and self._outage is not None
        logger.warning(
            "the ledger is reachable again after %.1fs; recorded the %d answers kept meanwhile",
            self._outage.elapsed_s,
            self._journal.kept,
        )
        self._journal.clear()
        self._outage = None
        self._state.notify_all()

    def _retry(self) -> None:
        while True:
            with self._state:
                outage = self._outage
                if outage is None or self._gave_up is not None:
                    self._retrier = None  # decided under the lock: a new outage starts another
                    return
                pause = outage.next_pause()
            time.sleep(pause)
            with self._state:
                if self._writing or self._outage is None:
                    continue
                self._writing = True
            try:
                self._drain()
            except Exception as exc:  # not an outage: the next try or close() reports it
                logger.warning("ledger write failed during an outage; retrying: %r", exc)
