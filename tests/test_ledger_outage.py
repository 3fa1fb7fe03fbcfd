"""The ledger rides out an outage of its database: answers are kept, journaled, written later.

The outage is simulated: a SQLite ledger whose backend answers `LedgerUnavailableError` (as a
database that cannot be reached does) while it is "down". The real thing, a PostgreSQL
restart in the middle of a step, is in ``test_ledger_restart.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from llm_assets.resources.ledger import (
    LedgerBackend,
    LedgerEntry,
    LedgerJournal,
    LedgerUnavailableError,
    LedgerWriter,
    Payer,
    ResponseLedger,
)
from llm_assets.resources.ledger.answer import LedgerAccess, answer_requests
from llm_assets.resources.llm import ChatRequest, ChatResult
from tests.test_ledger import make_entry

pytestmark = pytest.mark.timeout(120)


class _Outage(LedgerBackend):
    """A backend that is unreachable while ``down`` is set; counts the calls that failed."""

    def __init__(self, backend: LedgerBackend) -> None:
        self.backend = backend
        self.down = threading.Event()
        self.refused = 0

    def _check(self) -> None:
        if self.down.is_set():
            self.refused += 1
            raise LedgerUnavailableError("cannot connect to the ledger: connection refused")

    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        self._check()
        return self.backend.get_many(keys)

    def contains_many(self, keys: Sequence[str]) -> set[str]:
        self._check()
        return self.backend.contains_many(keys)

    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        self._check()
        return self.backend.put_many(entries)

    def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        self._check()
        return self.backend.claim_many(keys, owner, lease_s)

    def count(self) -> int:
        return self.backend.count()

    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        return self.backend.spend(run_id=run_id, asset_key=asset_key)

    def close(self) -> None:
        self.backend.close()


def _lines(directory: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in directory.glob("*.jsonl"))


def test_answers_written_during_an_outage_are_kept_and_written_when_it_ends(
    tmp_path: Path,
) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    outage = _Outage(ledger.get_backend())
    journal = LedgerJournal(ledger.journal_path(), "run-1")
    with LedgerWriter(outage, journal=journal, outage_limit_s=60) as writer:
        writer.add(make_entry(0))
        outage.down.set()
        started = time.monotonic()
        for i in range(1, 6):
            writer.add(make_entry(i))  # neither raises nor waits for the database
        assert time.monotonic() - started < 2
        assert writer.kept == 5 and not writer.gave_up
        assert _lines(ledger.journal_path()) == 5  # on disk before the ledger has them
        assert outage.backend.count() == 1
        time.sleep(0.5)  # the writer retries meanwhile, and keeps failing
        assert outage.refused >= 2
        outage.down.clear()
    assert outage.backend.count() == 6 and writer.written == 6
    assert _lines(ledger.journal_path()) == 0  # emptied once the ledger held them all
    ledger.get_backend().close()


def test_past_the_limit_the_journal_keeps_every_answer_for_the_next_open(
    tmp_path: Path,
) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"), outage_limit_s=0.5)
    outage = _Outage(ledger.get_backend())
    outage.down.set()
    writer = LedgerWriter(
        outage, journal=LedgerJournal(ledger.journal_path(), "run-1"), outage_limit_s=0.5
    )
    with pytest.raises(LedgerUnavailableError, match=r"3 answers .* are kept in"), writer:
        for i in range(3):
            writer.add(make_entry(i))
        while not writer.gave_up:
            time.sleep(0.05)
    assert outage.backend.count() == 0
    assert _lines(ledger.journal_path()) == 3
    ledger.get_backend().close()

    reopened = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    assert reopened.count() == 3  # replayed when the backend opened, before any lookup
    assert _lines(reopened.journal_path()) == 0
    assert reopened.get(make_entry(2).key) == make_entry(2)
    reopened.get_backend().close()


def test_a_live_writers_journal_is_left_to_it(tmp_path: Path) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    journal = LedgerJournal(ledger.journal_path(), "run-1")
    journal.append([make_entry(1)])
    other = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    assert other.count() == 0  # locked by its live writer: not replayed under it
    journal.close()
    other.get_backend().close()
    assert ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite")).count() == 1


def test_lookups_and_claims_wait_for_the_ledger_and_the_step_pays_once(tmp_path: Path) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    outage = _Outage(ledger.get_backend())
    outage.backend.put_many([make_entry(0)])
    requests = {
        make_entry(i).key: ChatRequest(make_entry(i).key, {"model": "sim-small"}, 5)
        for i in range(4)
    }
    sent: list[str] = []

    def send(
        batch: list[ChatRequest],
        on_result: Callable[[ChatResult], None],
        *,
        should_stop: Callable[[], bool],
    ) -> None:
        for request in batch:
            sent.append(request.key)
            on_result(ChatResult(request.key, True, {"id": request.key}, "sim-small", 3, 2, 0.001))

    outage.down.set()
    threading.Timer(1.0, outage.down.clear).start()
    access = LedgerAccess(
        outage, claim_lease_s=30, outage_limit_s=30, journal_dir=ledger.journal_path()
    )
    started = time.monotonic()
    answers = answer_requests(access, requests, send, payer=Payer("run-1", "label", "v1"))
    assert time.monotonic() - started >= 0.9  # it waited for the database, then went on
    assert set(answers.found) == {make_entry(0).key} and len(answers.paid) == 3
    assert sorted(sent) == sorted(set(requests) - {make_entry(0).key})
    assert outage.backend.count() == 4
    outage.close()


def test_a_lookup_fails_once_the_outage_outlasts_the_limit(tmp_path: Path) -> None:
    ledger = ResponseLedger(sqlite_path=str(tmp_path / "ledger.sqlite"))
    outage = _Outage(ledger.get_backend())
    outage.down.set()
    access = LedgerAccess(outage, outage_limit_s=0.5)
    request = ChatRequest("k1", {"model": "sim-small"}, 5)
    with pytest.raises(LedgerUnavailableError, match=r"outage_limit_s=0.5"):
        answer_requests(access, {"k1": request}, None, payer=Payer("run-1", "label", "v1"))
    assert outage.refused >= 3  # retried with backoff before giving up
    outage.close()
