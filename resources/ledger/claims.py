"""`RequestClaims`: leases on requests a step is paying for, so no two steps pay for one.

A step claims the requests the ledger cannot answer before it sends them. Of several steps
(runs, workers, hosts) that miss the same request at the same instant, exactly one wins the
claim and pays; the others wait for its answer to land in the ledger. A claim is a lease: the
holder renews it while it sends, and when the holder dies (SIGKILL, a lost machine) the lease
runs out and a waiting step claims the request itself, so a crash never blocks a row for
longer than one lease.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Sequence
from types import TracebackType

from llm_assets.resources.ledger.core import LedgerBackend, LedgerConfigError

logger = logging.getLogger(__name__)


def claim_owner(run_id: str) -> str:
    """A claim owner name unique to this call: the run, the process and a random suffix.

    Examples:
        >>> claim_owner("8f1c").startswith("8f1c/")
        True
    """
    return f"{run_id}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


class RequestClaims:
    """The claims one owner holds, renewed in the background and dropped on exit.

    Use it as a context manager: on entry a thread starts that renews the owner's leases every
    third of ``lease_s``; on exit the thread stops and every claim is released, so requests
    that failed here can be claimed by others at once.

    Args:
        backend: The ledger backend holding the claims.
        owner: Who claims (see `claim_owner`).
        lease_s: How long a claim lasts without renewal.

    Examples:
        .. code-block:: python

            with RequestClaims(backend, claim_owner(run_id), lease_s=120) as claims:
                mine = claims.claim(missing_keys)
                ...  # send the requests in `mine`; wait for the others' answers
    """

    def __init__(self, backend: LedgerBackend, owner: str, lease_s: float) -> None:
        if lease_s <= 0:
            raise LedgerConfigError(f"a claim lease must be positive (got lease_s={lease_s})")
        self.backend = backend
        self.owner = owner
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, keys: Sequence[str]) -> set[str]:
        """Claim ``keys``; return those this owner now holds (answered keys are never won)."""
        return self.backend.claim_many(keys, self.owner, self.lease_s) if keys else set()

    def __enter__(self) -> RequestClaims:
        self._thread = threading.Thread(
            target=self._renew, name="llm-assets-claim-renewal", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.backend.release_claims(self.owner)
        except Exception as error:  # leases run out anyway; never hide the step's own error
            logger.warning(
                "could not release request claims (they expire by themselves): %r", error
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.backend.renew_claims(self.owner, self.lease_s)
            except Exception as error:
                logger.warning("could not renew request claims; retrying: %r", error)
