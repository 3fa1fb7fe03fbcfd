"""Riding out a ledger outage: retry with backoff until the database is back or time is up.

A restart of the ledger's database takes a few seconds and a managed failover up to a minute;
neither should fail a step that is paying for answers. `wait_out` retries one ledger call
(a lookup, a claim) while it raises `LedgerUnavailableError`, and `Backoff` paces the
`LedgerWriter`'s retries of the answers it keeps meanwhile. Past ``limit_s`` the error stands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from llm_assets.resources.ledger.core import LedgerUnavailableError

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
