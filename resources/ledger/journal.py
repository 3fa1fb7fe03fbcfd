"""`LedgerJournal`: answers the ledger could not take yet, kept in a local file until it can.

While the ledger's database is unreachable (a restart, a failover) a `LedgerWriter` keeps the
answers that keep arriving in memory and appends each to its journal, one JSON line per entry,
flushed to disk before `append` returns. When the database is back the writer records them and
empties the journal. A step that gives up (the outage outlasted ``outage_limit_s``) or dies
leaves its journal behind; `replay_journals`, run by the next step that opens the ledger,
records those answers before any lookup, so the rerun pays only for rows never answered.

Each writer has its own file and holds an exclusive lock on it while it lives, so a replay
never takes a file a live step is still writing; a dead step's lock is gone with its process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from llm_assets.resources.ledger.core import LedgerBackend, LedgerEntry

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"
_REPLAY_BATCH = 500


def entry_to_json(entry: LedgerEntry) -> str:
    """One journal line holding ``entry``.

    Examples:
        >>> from datetime import UTC, datetime
        >>> entry = LedgerEntry("k1", {"id": "r"}, {"model": "m"}, "m", 3, 2, 0.001, 0.4,
        ...                     datetime(2026, 1, 1, tzinfo=UTC), "run", "asset", None, "v1")
        >>> entry_from_json(entry_to_json(entry)) == entry
        True
    """
    fields: dict[str, Any] = {
        "key": entry.key,
        "response": entry.response,
        "request": entry.request,
        "model": entry.model,
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "cost_usd": entry.cost_usd,
        "latency_s": entry.latency_s,
        "created_at": entry.created_at.isoformat(),
        "run_id": entry.run_id,
        "asset_key": entry.asset_key,
        "partition_key": entry.partition_key,
        "task_version": entry.task_version,
    }
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)


def entry_from_json(line: str) -> LedgerEntry:
    """The entry a journal line holds (see `entry_to_json`)."""
    fields = json.loads(line)
    fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    return LedgerEntry(**fields)


class LedgerJournal:
    """One writer's journal file, created on the first `append` and locked while open.

    Args:
        directory: Where the ledger's journals live (`ResponseLedger.journal_dir`).
        owner: Who writes, used in the file name (the step's claim owner, say).

    Examples:
        >>> import tempfile
        >>> from datetime import UTC, datetime
        >>> entry = LedgerEntry("k1", {"id": "r"}, {"model": "m"}, "m", 3, 2, 0.001, 0.4,
        ...                     datetime(2026, 1, 1, tzinfo=UTC), "run", "asset", None, "v1")
        >>> journal = LedgerJournal(Path(tempfile.mkdtemp()), "run-1")
        >>> journal.append([entry])
        >>> journal.kept
        1
        >>> journal.close()  # the file stays: its answers are not in the ledger yet
        >>> journal.path.exists()
        True
    """

    def __init__(self, directory: Path, owner: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", owner)[:80]
        self.path = directory / f"{safe}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        self.kept = 0
        self._file: IO[str] | None = None

    def append(self, entries: Iterable[LedgerEntry]) -> None:
        """Append ``entries`` and flush them to disk before returning."""
        lines = [entry_to_json(entry) + "\n" for entry in entries]
        if not lines:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._file.writelines(lines)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.kept += len(lines)

    def clear(self) -> None:
        """Forget every entry: the ledger holds them all now. The file is removed."""
        if self._file is None:
            return
        self._file.truncate(0)
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
        self.kept = 0

    def close(self) -> None:
        """Release the file; entries not cleared stay in it for `replay_journals`."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def replay_journals(directory: Path, backend: LedgerBackend) -> int:
    """Record the entries of every journal no live writer holds, then remove those journals.

    Args:
        directory: The ledger's journal directory; a missing directory holds nothing.
        backend: The ledger to record them in (the first answer for a key wins, as always).

    Returns:
        How many entries were new to the ledger.

    Raises:
        LedgerUnavailableError: The ledger cannot be reached; the journals stay for next time.

    Examples:
        >>> import tempfile
        >>> from llm_assets.resources.ledger import SQLiteLedgerBackend
        >>> tmp = Path(tempfile.mkdtemp())
        >>> backend = SQLiteLedgerBackend(tmp / "ledger.sqlite")
        >>> replay_journals(tmp / "journal", backend)
        0
        >>> backend.close()
    """
    if not directory.is_dir():
        return 0
    inserted = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            handle = open(path, "r+", encoding="utf-8")  # noqa: SIM115 - locked below
        except FileNotFoundError:
            continue  # its writer cleared it meanwhile
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live step holds it and will write it itself
            entries = _read(handle.read(), path)
            for start in range(0, len(entries), _REPLAY_BATCH):
                inserted += backend.put_many(entries[start : start + _REPLAY_BATCH])
            handle.truncate(0)
            path.unlink(missing_ok=True)
            if entries:
                logger.info("recorded %d answers kept in the ledger journal %s", len(entries), path)
    return inserted


def _read(text: str, path: Path) -> Sequence[LedgerEntry]:
    entries: list[LedgerEntry] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(entry_from_json(line))
        except (ValueError, TypeError, KeyError) as exc:
            # Only a process killed mid-write leaves a broken line, and only as the last one.
            logger.warning(
                "skipping unreadable line %d of ledger journal %s: %r", number, path, exc
            )
    return entries
