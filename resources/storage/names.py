"""File names of tables: one distinct, safe name per asset key part and partition key.

Every name in a path (asset key part, partition key, dimension name and key) goes through
``escape_path_component``: bytes outside ``[A-Za-z0-9._-]`` and a leading ``.`` are
percent-encoded, so two keys never share a file (``us/east`` is ``us%2Feast``, ``us_east``
stays ``us_east``), no key can climb out of the storage root (``..`` is ``%2E.``) and safe
keys such as ``2026-11-02`` keep their plain names.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import dagster as dg

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# 200 bytes leaves room under the usual 255-byte NAME_MAX for ".parquet" and for the
# temporary ".<name>.<32 hex>.tmp" that a local write renames into place.
MAX_NAME_BYTES = 200
# Neither marker can come out of plain escaping: it only ever writes "%" before two hex digits
# and never writes "~", so empty and hashed names cannot collide with any escaped name.
_EMPTY_NAME = "%empty"
_HASH_SEPARATOR = "~"
_SHA256_HEX_CHARS = 64
_MIN_NAME_BYTES = 80


def escape_path_component(text: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """Maps any string to a distinct name that is safe as one path component.

    Each UTF-8 byte outside ``[A-Za-z0-9._-]`` becomes ``%XX`` (upper-case hex), and so does a
    leading ``.``, so the result never contains ``/``, is never ``.`` or ``..``, and never
    looks like a hidden or temporary file. Strings that are already safe keep their name. The
    mapping is injective and ``urllib.parse.unquote`` reverses it, with two exceptions that
    stay injective: the empty string is ``%empty``, and a name that would exceed
    ``max_bytes`` becomes a readable prefix, ``~`` and the SHA-256 of the string.

    Args:
        text: A partition key, dimension name or asset key part.
        max_bytes: Longest name to produce (at least 80).

    Returns:
        An ASCII name of at most ``max_bytes`` bytes.

    Raises:
        ValueError: If ``max_bytes`` is below 80 (no room for the hash).

    Examples:
        >>> [escape_path_component(k) for k in ["2026-11-02", "us/east", "us_east", ".."]]
        ['2026-11-02', 'us%2Feast', 'us_east', '%2E.']
        >>> escape_path_component("café")
        'caf%C3%A9'
    """
    if max_bytes < _MIN_NAME_BYTES:
        raise ValueError(f"max_bytes must be at least {_MIN_NAME_BYTES}, got {max_bytes}")
    if not text:
        return _EMPTY_NAME
    escaped = "".join(
        chr(byte) if byte in _SAFE_BYTES else f"%{byte:02X}"
        for byte in text.encode("utf-8", "surrogatepass")
    )
    if escaped.startswith("."):
        escaped = "%2E" + escaped[1:]
    if len(escaped) <= max_bytes:
        return escaped
    keep = max(0, max_bytes - len(_HASH_SEPARATOR) - _SHA256_HEX_CHARS)
    prefix = escaped[:keep]
    cut = prefix.rfind("%", max(0, keep - 2))
    if cut != -1:  # do not split a %XX escape
        prefix = prefix[:cut]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}{_HASH_SEPARATOR}{digest}"


def table_file(asset_key: dg.AssetKey, partition_key: str | None) -> PurePosixPath:
    """Where one partition's file lives, relative to the storage root.

    ``<asset/key/path>.parquet`` for an unpartitioned asset (``partition_key`` is ``None``),
    ``<asset/key/path>/<partition>.parquet`` for one dimension and
    ``<asset/key/path>/<dim>=<key>/.../data.parquet`` for several (dimensions sorted by name).

    Examples:
        >>> table_file(dg.AssetKey(["group", "reviews"]), "2026-11-02").as_posix()
        'group/reviews/2026-11-02.parquet'
        >>> table_file(dg.AssetKey("reviews"), None).as_posix()
        'reviews.parquet'
        >>> key = dg.MultiPartitionKey({"region": "us/east", "date": "2026-11-02"})
        >>> table_file(dg.AssetKey("reviews"), key).as_posix()
        'reviews/date=2026-11-02/region=us%2Feast/data.parquet'
    """
    folder = PurePosixPath(*[escape_path_component(part) for part in asset_key.path])
    if partition_key is None:
        return folder.with_name(folder.name + ".parquet")
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = sorted(partition_key.keys_by_dimension.items())
        return folder.joinpath(
            *[_dimension_component(name, value) for name, value in dims], "data.parquet"
        )
    return folder / f"{escape_path_component(str(partition_key))}.parquet"


def _dimension_component(dimension: str, key: str) -> str:
    """``<dim>=<key>``, both escaped; ``=`` is always escaped inside either, so it splits."""
    name = escape_path_component(dimension, MAX_NAME_BYTES // 2)
    budget = MAX_NAME_BYTES - len(name) - 1
    return f"{name}={escape_path_component(key, budget)}"
