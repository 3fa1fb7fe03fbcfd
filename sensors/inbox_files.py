"""The files of an inbox directory: which ones count, their partition keys, reading and checks.

Only plain files directly inside the directory count. Skipped without a word: symlinks (even
ones pointing inside), anything that resolves outside the directory, subdirectories and their
contents, names starting with ``.`` (write ``.name.csv.tmp`` and rename it into place for an
atomic drop), and suffixes other than ``.csv``, ``.jsonl`` and ``.parquet`` (case-insensitive).

A file's partition key is its stem made safe (``[A-Za-z0-9._-]``, at most 80 characters), ``-``
and the first 8 hex digits of the SHA-256 of its bytes: ``reviews-2026-11-02.csv`` becomes
``reviews-2026-11-02-3f9a1c2b``. The key names the content, not just the file, so a corrected
file is a new partition and the asset can tell when a file changed after it was ingested.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
KEY_HASH_CHARS = 8
_MAX_STEM_CHARS = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileProblem(Exception):
    """Why an inbox file cannot be ingested, in words that name the fix."""


@dataclass(frozen=True)
class InboxFile:
    """A candidate file seen in the inbox, with the stat that tells whether it settled."""

    name: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def format(self) -> str:
        """``csv``, ``jsonl`` or ``parquet``, from the suffix."""
        return FORMATS[Path(self.name).suffix.lower()]


def unlistable(directory: Path, exc: OSError) -> str:
    """Why the inbox cannot be listed, with its absolute path and what to do about it.

    Examples:
        >>> import errno
        >>> error = FileNotFoundError(errno.ENOENT, "No such file or directory")
        >>> unlistable(Path("/srv/inbox"), error)
        'inbox /srv/inbox cannot be listed (No such file or directory): create it (mkdir -p \
/srv/inbox) or give the feed the directory files are dropped in'
    """
    where = directory.absolute()
    if isinstance(exc, FileNotFoundError):
        fix = f"create it (mkdir -p {where}) or give the feed the directory files are dropped in"
    elif isinstance(exc, NotADirectoryError):
        fix = "it is a file: give the feed the directory files are dropped in"
    elif isinstance(exc, PermissionError):
        fix = "let the user the Dagster daemon and code server run as read and enter it"
    else:
        fix = "check the path and the file system it is on"
    return f"inbox {where} cannot be listed ({exc.strerror or exc}): {fix}"


def list_inbox(directory: Path) -> list[InboxFile]:
    """The candidate files directly in ``directory``, sorted by name.

    Raises:
        OSError: If the directory cannot be listed (missing, not a directory, no permission).
    """
    root = directory.resolve(strict=True)
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in FORMATS:
                continue
            try:
                if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                if path.resolve(strict=True).parent != root:
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:  # vanished between listing and stat
                continue
            found.append(InboxFile(entry.name, path, info.st_size, info.st_mtime_ns))
    return sorted(found, key=lambda f: f.name)


def safe_stem(name: str) -> str:
    """The part of a partition key that comes from the file name.

    Examples:
        >>> safe_stem("reviews 2026-11-02 (final).csv")
        'reviews_2026-11-02_final'
    """
    stem = _UNSAFE.sub("_", Path(name).stem).strip("._-")[:_MAX_STEM_CHARS].strip("._-")
    return stem or "file"


def partition_key_for(name: str, sha256: str) -> str:
    """The dynamic partition key of a file with this name and content hash.

    Examples:
        >>> partition_key_for("reviews-2026-11-02.csv", "3f9a1c2b" + "0" * 56)
        'reviews-2026-11-02-3f9a1c2b'
    """
    return f"{safe_stem(name)}-{sha256[:KEY_HASH_CHARS]}"


def find_partition_file(
    directory: Path, partition_key: str, expected_sha256: str | None = None
) -> tuple[InboxFile, bytes, str]:
    """The inbox file whose name and content give ``partition_key``, its bytes and SHA-256.

    The key is never turned into a path: the inbox is listed (plain files only) and each file
    named like the key's stem is hashed, so no key can reach outside the directory.

    Raises:
        FileProblem: The key is malformed, the inbox cannot be listed, or no file there has the
            partition's content any more (gone, or changed since it was ingested).
    """
    stem, _, short = partition_key.rpartition("-")
    if not stem or not re.fullmatch(f"[0-9a-f]{{{KEY_HASH_CHARS}}}", short):
        raise FileProblem(f"'{partition_key}' is not an inbox partition key (<stem>-<8 hex>)")
    try:
        named = [f for f in list_inbox(directory) if safe_stem(f.name) == stem]
    except OSError as exc:
        raise FileProblem(unlistable(directory, exc)) from None
    changed = []
    for file in named:
        try:
            data = read_bytes(file.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise FileProblem(f"{file.name} cannot be read ({exc})") from None
        sha = sha256_hex(data)
        if partition_key_for(file.name, sha) == partition_key and expected_sha256 in (None, sha):
            return file, data, sha
        changed.append(f"{file.name} now has sha256 {sha[:16]}")
    if changed:
        raise FileProblem(
            f"the file changed after it was ingested ({'; '.join(changed)}; the partition holds "
            f"content {expected_sha256 or short}). Its new content gets a partition of its own "
            "on the sensor's next tick; restore the original bytes to re-materialize this one"
        )
    raise FileProblem(
        f"the file is no longer in the inbox: no file named {stem}{{{','.join(FORMATS)}}} in "
        f"{directory} (symlinks and subdirectories are ignored); put the original file back "
        "to re-materialize this partition"
    )


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file, refusing a symlink swapped in since it was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FileProblem("not a regular file")
        return handle.read()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in hex: the run key and, shortened, part of the partition key."""
    return hashlib.sha256(data).hexdigest()


def parse_table(data: bytes, fmt: str, required_columns: Sequence[str] = ()) -> pd.DataFrame:
    r"""Parses an inbox file into a table, or says what is wrong with it.

    CSV cells are read as text (ids keep leading zeros, empty cells are empty strings); a UTF-8
    byte-order mark is accepted. JSONL needs one JSON object per line; blank lines are skipped.

    Raises:
        FileProblem: Empty, not UTF-8, unparseable, without rows, missing a required column,
            or holding values that cannot be stored as Parquet.

    Examples:
        >>> parse_table(b"id,body\n007,hello\n", "csv", ["id", "body"]).to_dict("records")
        [{'id': '007', 'body': 'hello'}]
    """
    if not data:
        raise FileProblem("the file is empty (0 bytes)")
    table = _parse_parquet(data) if fmt == "parquet" else _parse_text(_decode(data), fmt)
    if table.empty:
        raise FileProblem(f"no rows (columns: {', '.join(map(str, table.columns)) or 'none'})")
    missing = [c for c in required_columns if c not in table.columns]
    if missing:
        raise FileProblem(
            f"missing required column(s) {', '.join(missing)} "
            f"(columns present: {', '.join(map(str, table.columns))})"
        )
    try:
        pa.Table.from_pandas(table, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise FileProblem(f"values cannot be stored as Parquet (mixed types?): {exc}") from None
    return table


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from None


def _parse_text(text: str, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise FileProblem("no header row (the file holds only whitespace)") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise FileProblem(f"cannot parse as CSV: {_first_line(exc)}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FileProblem(f"line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise FileProblem(f"line {number} is a JSON {type(row).__name__}, not an object")
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _parse_parquet(data: bytes) -> pd.DataFrame:
    try:
        return pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileProblem(f"cannot read as Parquet: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
