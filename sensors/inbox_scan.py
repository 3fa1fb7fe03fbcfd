"""One look at an inbox: which files are new, still being written, bad or already handled.

No Dagster here: ``scan_inbox`` takes the previous cursor and returns the files to run, the
bad files to report and the next cursor; ``llm_assets.sensors.inbox`` turns that into a tick.

The cursor is JSON, one entry per candidate file currently in the inbox::

    {"v": 1, "files": {"reviews.csv": [size, mtime_ns, "<sha256>", "ingested"], ...}}

An entry is ``pending`` (seen, not settled yet), ``ingested`` (a run was requested for this
content, by this file or an identical one) or ``bad`` (reported once). Entries of files that
left the inbox are dropped, so the cursor stays about 120 bytes per file present. An unchanged
size and mtime reuse the entry, so a tick reads only new or changed files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llm_assets.sensors.inbox_files import (
    FileProblem,
    InboxFile,
    list_inbox,
    parse_table,
    partition_key_for,
    read_bytes,
    sha256_hex,
)

PENDING, INGESTED, BAD = "pending", "ingested", "bad"
CURSOR_VERSION = 1


@dataclass(frozen=True)
class Seen:
    """What the previous tick knew about a file name."""

    size: int
    mtime_ns: int
    sha256: str | None
    state: str


@dataclass
class InboxCursor:
    """The sensor's memory between ticks (see the module docstring for the format)."""

    files: dict[str, Seen] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> InboxCursor:
        """Parses a cursor; ``None`` or ``""`` is a fresh start.

        Raises:
            ValueError: If ``text`` is not a cursor of this version.
        """
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {raw.get('v')!r}, expected {CURSOR_VERSION}")
            return cls({name: Seen(*entry) for name, entry in raw["files"].items()})
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an inbox cursor: {exc}") from None

    def to_json(self) -> str:
        """The compact JSON form stored by Dagster."""
        files = {n: [s.size, s.mtime_ns, s.sha256, s.state] for n, s in sorted(self.files.items())}
        return json.dumps({"v": CURSOR_VERSION, "files": files}, separators=(",", ":"))


@dataclass(frozen=True)
class NewFile:
    """A settled file whose content the cursor does not know: it gets a run request.

    ``earlier_run`` is set when the instance already has a run for this content (the cursor
    was older than the runs); the request then reuses that run's partition and run key, and
    Dagster skips it, or launches that run if it was created but never started.
    """

    name: str
    sha256: str
    partition_key: str
    rows: int | None
    earlier_run: str | None = None


@dataclass
class ScanResult:
    """What one look at the inbox found."""

    cursor: InboxCursor
    new: list[NewFile] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file name, problem)
    known: list[tuple[str, str]] = field(default_factory=list)  # (file name, why skipped)
    waiting: list[str] = field(default_factory=list)  # still being written, or deferred

    def skip_message(self, directory: Path) -> str:
        """Why a tick without run requests requested nothing, naming files and problems."""
        parts = []
        if self.bad:
            bad = [f"{name}: {problem}" for name, problem in self.bad]
            parts.append(f"skipped {len(bad)} bad file(s): {_listing(bad)}")
        if self.known:
            parts.append(f"no new content in {_listing([f'{n} ({w})' for n, w in self.known])}")
        if self.waiting:
            parts.append(f"waiting for {_listing(self.waiting)} to settle")
        return "; ".join(parts) or f"no new files in {directory}"


def _listing(items: Sequence[str], limit: int = 10) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


# sha256 -> (partition key, run id) of a run already requested for that content, or None.
EarlierRun = Callable[[str], tuple[str, str] | None]


def scan_inbox(
    directory: Path,
    cursor: InboxCursor,
    *,
    required_columns: Sequence[str] = (),
    settle_s: float = 5.0,
    max_files: int = 50,
    earlier_run: EarlierRun | None = None,
    now: float | None = None,
) -> ScanResult:
    """Compares the inbox with the cursor and reads the files that settled since.

    A file has settled when its size and mtime are the same as at the previous tick, or its
    mtime is at least ``settle_s`` old. At most ``max_files`` files are read per call (oldest
    first); the rest wait for the next tick. ``earlier_run(sha256)`` may name a run already
    requested for a content (the cursor can be older than the runs: a tick that died after
    creating its run, a reset cursor, a copy of a file that left the inbox); the file is then
    requested again with that run's partition key, so no second partition appears.

    Raises:
        OSError: If the directory cannot be listed.
    """
    now = time.time() if now is None else now
    result = ScanResult(InboxCursor())
    seen = result.cursor.files
    handled: dict[str, tuple[str, str]] = {}  # sha256 -> (state, first file with it)
    settled: list[tuple[InboxFile, Seen | None]] = []
    for file in list_inbox(directory):
        prev = cursor.files.get(file.name)
        unchanged = prev is not None and (prev.size, prev.mtime_ns) == (file.size, file.mtime_ns)
        # An unreadable file (bad, no hash) is retried every tick: a chmod keeps its mtime.
        if prev is not None and unchanged and prev.state != PENDING and prev.sha256:
            seen[file.name] = prev
            handled.setdefault(prev.sha256, (prev.state, file.name))
        elif unchanged or now - file.mtime_ns / 1e9 >= settle_s:
            settled.append((file, prev))
        else:
            seen[file.name] = Seen(file.size, file.mtime_ns, None, PENDING)
            result.waiting.append(file.name)
    settled.sort(key=lambda item: (item[0].mtime_ns, item[0].name))
    for index, (file, prev) in enumerate(settled):
        if index >= max_files:
            # Deferred, not forgotten: pending with this stat, it counts as settled next tick.
            seen[file.name] = Seen(file.size, file.mtime_ns, None, PENDING)
            result.waiting.append(file.name)
            continue
        _examine(file, prev, result, handled, required_columns, earlier_run)
    return result


def _examine(
    file: InboxFile,
    prev: Seen | None,
    result: ScanResult,
    handled: dict[str, tuple[str, str]],
    required_columns: Sequence[str],
    earlier_run: EarlierRun | None,
) -> None:
    seen = result.cursor.files
    try:
        data = read_bytes(file.path)
        after = os.stat(file.path, follow_symlinks=False)
    except FileNotFoundError:
        return  # gone since the listing: nothing to remember
    except (OSError, FileProblem) as exc:
        problem = f"cannot read it ({getattr(exc, 'strerror', None) or exc})"
        reported = prev == Seen(file.size, file.mtime_ns, None, BAD)
        seen[file.name] = Seen(file.size, file.mtime_ns, None, BAD)
        if not reported:
            result.bad.append((file.name, problem))
        return
    if (after.st_size, after.st_mtime_ns) != (file.size, file.mtime_ns) or len(data) != file.size:
        seen[file.name] = Seen(after.st_size, after.st_mtime_ns, None, PENDING)
        result.waiting.append(file.name)
        return
    sha = sha256_hex(data)

    def remember(state: str) -> None:
        seen[file.name] = Seen(file.size, file.mtime_ns, sha, state)
        handled.setdefault(sha, (state, file.name))

    if prev is not None and prev.sha256 == sha and prev.state != PENDING:
        remember(prev.state)  # touched, same bytes: nothing new to say
        return
    if sha in handled:
        state, first = handled[sha]
        remember(state)
        result.known.append((file.name, f"same content as {first} ({state})"))
        return
    earlier = earlier_run(sha) if earlier_run is not None else None
    if earlier is not None:
        remember(INGESTED)
        result.new.append(NewFile(file.name, sha, earlier[0], None, earlier_run=earlier[1]))
        return
    try:
        table = parse_table(data, file.format, required_columns)
    except FileProblem as exc:
        remember(BAD)
        result.bad.append((file.name, str(exc)))
        return
    remember(INGESTED)
    result.new.append(NewFile(file.name, sha, partition_key_for(file.name, sha), len(table)))
