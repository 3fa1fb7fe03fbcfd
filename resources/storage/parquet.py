"""``ParquetIOManager``: one Parquet file per asset partition, written atomically.

Layout under ``base_dir``::

    <base_dir>/<asset/key/path>.parquet                      unpartitioned asset
    <base_dir>/<asset/key/path>/<partition>.parquet          single-dimension partitions
    <base_dir>/<asset/key/path>/<dim>=<key>/.../data.parquet multi-dimension partitions

A step that covers several partitions (a single-run backfill, ``BackfillPolicy.single_run()``)
hands over a ``dict`` of partition key to DataFrame and gets one back when it loads several
upstream partitions. Dagster's ``UPathIOManager`` refuses that case; this one writes one file
per partition, each through a temporary file and ``os.replace``, so a reader never sees half
a file and a crash never leaves one behind under the final name.
"""

from __future__ import annotations

import os
import re
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

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def _safe(part: str) -> str:
    return _UNSAFE.sub("_", part) or "_"


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
        return Path(self.base_dir).joinpath(*[_safe(p) for p in asset_key.path])

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        """The file of one partition (``None`` for an unpartitioned asset).

        Examples:
            >>> ParquetIOManager(base_dir="d").path_for(dg.AssetKey("a"), "2026-11-01").as_posix()
            'd/a/2026-11-01.parquet'
        """
        if partition_key is None:
            folder = self.asset_dir(asset_key)
            return folder.with_name(folder.name + ".parquet")
        if isinstance(partition_key, dg.MultiPartitionKey):
            dims = sorted(partition_key.keys_by_dimension.items())
            parts = [f"{_safe(name)}={_safe(value)}" for name, value in dims]
            return self.asset_dir(asset_key).joinpath(*parts, "data.parquet")
        return self.asset_dir(asset_key) / f"{_safe(str(partition_key))}.parquet"

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
