"""``ParquetIOManager``: one Parquet file per asset partition, written atomically.

Layout under ``base_dir``::

    <base_dir>/<asset/key/path>.parquet                      unpartitioned asset
    <base_dir>/<asset/key/path>/<partition>.parquet          single-dimension partitions
    <base_dir>/<asset/key/path>/<dim>=<key>/.../data.parquet multi-dimension partitions

Every name in a path (asset key part, partition key, dimension name and key) goes through
``escape_path_component``: bytes outside ``[A-Za-z0-9._-]`` and a leading ``.`` are
percent-encoded, so two keys never share a file (``us/east`` is ``us%2Feast``, ``us_east``
stays ``us_east``), no key can climb out of ``base_dir`` (``..`` is ``%2E.``) and safe keys
such as ``2026-11-02`` keep their plain names.

A step that covers several partitions (a single-run backfill, ``BackfillPolicy.single_run()``)
hands over a ``dict`` of partition key to DataFrame and gets one back when it loads several
upstream partitions. Dagster's ``UPathIOManager`` refuses that case; this one writes one file
per partition, each through a temporary file and ``os.replace``, so a reader never sees half
a file and a crash never leaves one behind under the final name.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from llm_assets.resources.errors import UserError

_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# 200 bytes leaves room under the usual 255-byte NAME_MAX for ".parquet" and for the
# temporary ".<name>.<32 hex>.tmp" that write_parquet_atomic renames into place.
_MAX_NAME_BYTES = 200
# Neither marker can come out of plain escaping: it only ever writes "%" before two hex digits
# and never writes "~", so empty and hashed names cannot collide with any escaped name.
_EMPTY_NAME = "%empty"
_HASH_SEPARATOR = "~"
_SHA256_HEX_CHARS = 64
_MIN_NAME_BYTES = 80


def escape_path_component(text: str, max_bytes: int = _MAX_NAME_BYTES) -> str:
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


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Writes ``df`` to ``path`` through a temporary file and an atomic rename.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "t.parquet"
        >>> write_parquet_atomic(pd.DataFrame({"a": [1]}), target)
        >>> pd.read_parquet(target)["a"].tolist()
        [1]
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet, one file per partition.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets.resources import ParquetIOManager

            defs = dg.Definitions(
                assets=[...],
                resources={"io_manager": ParquetIOManager(base_dir="data")},
            )
    """

    base_dir: str = Field(
        default="data", description="Root folder of the Parquet files (relative to the cwd)."
    )

    def asset_dir(self, asset_key: dg.AssetKey) -> Path:
        """The folder holding an asset's partition files."""
        return Path(self.base_dir).joinpath(*[escape_path_component(p) for p in asset_key.path])

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        """The file of one partition (``None`` for an unpartitioned asset).

        Distinct partition keys always get distinct files inside ``asset_dir(asset_key)``;
        see ``escape_path_component``.

        Examples:
            >>> ParquetIOManager(base_dir="d").path_for(dg.AssetKey("a"), "2026-11-01").as_posix()
            'd/a/2026-11-01.parquet'
            >>> ParquetIOManager(base_dir="d").path_for(dg.AssetKey("a"), "us/east").as_posix()
            'd/a/us%2Feast.parquet'
        """
        if partition_key is None:
            folder = self.asset_dir(asset_key)
            return folder.with_name(folder.name + ".parquet")
        if isinstance(partition_key, dg.MultiPartitionKey):
            dims = sorted(partition_key.keys_by_dimension.items())
            return self.asset_dir(asset_key).joinpath(
                *[_dimension_component(name, value) for name, value in dims], "data.parquet"
            )
        return self.asset_dir(asset_key) / f"{escape_path_component(str(partition_key))}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Writes one file per partition the step materialized."""
        if obj is None:
            return
        asset_key = context.asset_key
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if len(keys) > 1 or isinstance(obj, Mapping):
            if not isinstance(obj, Mapping):
                raise UserError(
                    f"asset '{asset_key.to_user_string()}' materializes {len(keys)} partitions "
                    "in one run, so it must return a dict of partition key to DataFrame; it "
                    f"returned {type(obj).__name__}"
                )
            missing = sorted(set(keys) - set(obj))
            if missing:
                raise UserError(
                    f"asset '{asset_key.to_user_string()}' returned no DataFrame for "
                    f"partition(s) {missing}; return one (possibly empty) per partition"
                )
            for key in keys:
                self._write(context, asset_key, key, obj[key])
            return
        self._write(context, asset_key, keys[0] if keys else None, obj)

    def _write(
        self, context: dg.OutputContext, asset_key: dg.AssetKey, key: str | None, df: Any
    ) -> None:
        if not isinstance(df, pd.DataFrame):
            raise UserError(
                f"ParquetIOManager stores pandas DataFrames; asset "
                f"'{asset_key.to_user_string()}' returned {type(df).__name__}"
            )
        path = self.path_for(asset_key, key)
        write_parquet_atomic(df, path)
        context.log.debug(f"wrote {len(df)} rows to {path}")

    def load_input(self, context: dg.InputContext) -> Any:
        """Reads the partitions the step needs: a DataFrame for one, a dict for several."""
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return self._read(asset_key, None)
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            return self._read(asset_key, keys[0])
        return {key: self._read(asset_key, key) for key in keys}

    def _read(self, asset_key: dg.AssetKey, key: str | None) -> pd.DataFrame:
        path = self.path_for(asset_key, key)
        if not path.exists():
            where = f"partition '{key}' of " if key is not None else ""
            raise UserError(
                f"no data for {where}asset '{asset_key.to_user_string()}' at {path}; "
                "materialize it first (or check ParquetIOManager.base_dir)"
            )
        return pd.read_parquet(path)


def _dimension_component(dimension: str, key: str) -> str:
    """``<dim>=<key>``, both escaped; ``=`` is always escaped inside either, so it splits."""
    name = escape_path_component(dimension, _MAX_NAME_BYTES // 2)
    budget = _MAX_NAME_BYTES - len(name) - 1
    return f"{name}={escape_path_component(key, budget)}"
