"""``ParquetIOManager``: one Parquet file per asset partition, on local disk or object storage.

Layout under ``base_dir`` (a folder, or a ``file://``, ``s3://`` or ``gs://`` URI)::

    <base_dir>/<asset/key/path>.parquet                      unpartitioned asset
    <base_dir>/<asset/key/path>/<partition>.parquet          single-dimension partitions
    <base_dir>/<asset/key/path>/<dim>=<key>/.../data.parquet multi-dimension partitions

Names are escaped, not cleaned (see ``names``), and every file is published whole or not at
all (see ``stores``): write and rename on local disk, one upload on an object store.

A step that covers several partitions (a single-run backfill, ``BackfillPolicy.single_run()``)
hands over a ``dict`` of partition key to DataFrame and gets one back when it loads several
upstream partitions. Dagster's ``UPathIOManager`` refuses that case; this one writes one file
per partition and records each file's URI on that partition's materialization.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from llm_assets.resources.errors import UserError
from llm_assets.resources.settings import resolve_setting
from llm_assets.resources.storage.location import Location, parse_location
from llm_assets.resources.storage.names import escape_path_component, table_file
from llm_assets.resources.storage.stores import (
    ObjectStoreSettings,
    TableStore,
    open_store,
    write_parquet_atomic,
)

__all__ = ["ParquetIOManager", "escape_path_component", "write_parquet_atomic"]

_SECRET_FIELDS = frozenset({"s3_access_key_id", "s3_secret_access_key", "s3_session_token"})
URI_METADATA_KEY = "uri"


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as Parquet, one file per partition, locally or in a bucket.

    Examples:
        A folder (relative to the working directory), as before:

        >>> import dagster as dg
        >>> ParquetIOManager(base_dir="data").uri_for(dg.AssetKey("a"), "2026-11-01")
        'file:///.../data/a/2026-11-01.parquet'

        S3, or an S3-compatible server such as MinIO, with keys from the environment:

        .. code-block:: python

            import dagster as dg
            from llm_assets.resources import ParquetIOManager

            defs = dg.Definitions(
                assets=[...],
                resources={
                    "io_manager": ParquetIOManager(
                        base_dir="s3://lake/llm-tables",
                        endpoint_url="http://minio.internal:9000",  # omit for AWS S3
                        s3_region="us-east-1",
                        s3_access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
                        s3_secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
                    )
                },
            )
    """

    base_dir: str = Field(
        default="data",
        description="Where the tables live: a folder (relative to the working directory) or a "
        "URI: file:///absolute/folder, s3://bucket/prefix, gs://bucket/prefix. Never put "
        "credentials in it.",
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Object store endpoint other than the provider's own, as http(s)://host:port:"
        " an S3-compatible server (MinIO, Ceph, R2, moto) or a GCS emulator. Default: AWS S3 or "
        "Google Cloud Storage.",
    )
    s3_region: str | None = Field(
        default=None,
        description="Region of the S3 bucket. Default: AWS_REGION / AWS_DEFAULT_REGION / the AWS "
        "profile; with endpoint_url and none of these, us-east-1.",
    )
    s3_access_key_id: str | None = Field(
        default=None,
        description="S3 access key id; pass dg.EnvVar('AWS_ACCESS_KEY_ID'). Default: the AWS "
        "credential chain (environment, ~/.aws, instance or pod role). Never shown.",
    )
    s3_secret_access_key: str | None = Field(
        default=None,
        description="S3 secret key; pass dg.EnvVar('AWS_SECRET_ACCESS_KEY'). Never shown.",
    )
    s3_session_token: str | None = Field(
        default=None,
        description="Session token of temporary S3 credentials; pass dg.EnvVar(...). Never shown.",
    )

    _store: TableStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Opens the store once per process and fails early when its bucket is missing."""
        self._opened_store().check()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (_masked(value) if name in _SECRET_FIELDS else value)

    @property
    def location(self) -> Location:
        """Where the tables live, read from ``base_dir``."""
        return parse_location(self.base_dir)

    def uri_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> str:
        """The URI of one partition's file (``None`` for an unpartitioned asset).

        Examples:
            >>> io = ParquetIOManager(base_dir="s3://lake/tables")
            >>> io.uri_for(dg.AssetKey("a"), "us/east")
            's3://lake/tables/a/us%2Feast.parquet'
        """
        return self.location.uri(table_file(asset_key, partition_key))

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        """The local file of one partition (``None`` for an unpartitioned asset).

        Distinct partition keys always get distinct files; see ``escape_path_component``.

        Raises:
            UserError: ``base_dir`` is an object store; use ``uri_for`` and ``find_table``.

        Examples:
            >>> ParquetIOManager(base_dir="d").path_for(dg.AssetKey("a"), "2026-11-01").as_posix()
            'd/a/2026-11-01.parquet'
            >>> ParquetIOManager(base_dir="d").path_for(dg.AssetKey("a"), "us/east").as_posix()
            'd/a/us%2Feast.parquet'
        """
        location = self.location
        if not location.is_local:
            raise UserError(
                f"ParquetIOManager.base_dir {location.uri()!r} is not a local folder, so its "
                "files have no local path; use uri_for(...) and find_table(...)"
            )
        return location.local_path(table_file(asset_key, partition_key))

    def find_table(self, asset_key: dg.AssetKey, partition_key: str | None) -> pd.DataFrame | None:
        """One partition's table, or ``None`` when nothing was written for it.

        Examples:
            >>> import tempfile
            >>> io = ParquetIOManager(base_dir=tempfile.mkdtemp())
            >>> io.find_table(dg.AssetKey("reviews"), "2026-11-02") is None
            True
        """
        return self._opened_store().read(table_file(asset_key, partition_key))

    def read_table(self, asset_key: dg.AssetKey, partition_key: str | None) -> pd.DataFrame:
        """One partition's table, wherever ``base_dir`` points.

        Raises:
            UserError: Nothing was written for that partition. The message names the URI.
        """
        relative = table_file(asset_key, partition_key)
        df = self._opened_store().read(relative)
        if df is None:
            where = f"partition '{partition_key}' of " if partition_key is not None else ""
            raise UserError(
                f"no data for {where}asset '{asset_key.to_user_string()}' at "
                f"{self.location.uri(relative)}; materialize it first (or check "
                "ParquetIOManager.base_dir)"
            )
        return df

    def write_table(
        self, asset_key: dg.AssetKey, partition_key: str | None, df: pd.DataFrame
    ) -> str:
        """Writes one table where ``find_table`` reads it, outside a run; returns its URI.

        Examples:
            >>> import tempfile
            >>> io = ParquetIOManager(base_dir=tempfile.mkdtemp())
            >>> key = dg.AssetKey(["experiments", "a"])
            >>> uri = io.write_table(key, "e1", pd.DataFrame({"x": [1]}))
            >>> io.find_table(key, "e1")["x"].tolist()
            [1]
        """
        relative = table_file(asset_key, partition_key)
        self._opened_store().write(relative, df)
        return self.location.uri(relative)

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
            uris = {key: self._write(context, asset_key, key, obj[key]) for key in keys}
            _record_uris(context, asset_key, uris)
            return
        uri = self._write(context, asset_key, keys[0] if keys else None, obj)
        context.add_output_metadata({URI_METADATA_KEY: dg.MetadataValue.path(uri)})

    def load_input(self, context: dg.InputContext) -> Any:
        """Reads the partitions the step needs: a DataFrame for one, a dict for several."""
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return self.read_table(asset_key, None)
        keys = list(context.asset_partition_keys)
        if len(keys) == 1:
            return self.read_table(asset_key, keys[0])
        return {key: self.read_table(asset_key, key) for key in keys}

    def _write(
        self, context: dg.OutputContext, asset_key: dg.AssetKey, key: str | None, df: Any
    ) -> str:
        if not isinstance(df, pd.DataFrame):
            raise UserError(
                f"ParquetIOManager stores pandas DataFrames; asset "
                f"'{asset_key.to_user_string()}' returned {type(df).__name__}"
            )
        relative = table_file(asset_key, key)
        self._opened_store().write(relative, df)
        uri = self.location.uri(relative)
        context.log.debug(f"wrote {len(df)} rows to {uri}")
        return uri

    def _opened_store(self) -> TableStore:
        """The store, built on first use (inside a run, or by ``trace`` and notebooks)."""
        if self._store is None:
            self._store = open_store(
                self.location,
                ObjectStoreSettings(
                    endpoint_url=self.endpoint_url,
                    region=self.s3_region,
                    access_key_id=resolve_setting(
                        self.s3_access_key_id, field="ParquetIOManager.s3_access_key_id"
                    ),
                    secret_access_key=resolve_setting(
                        self.s3_secret_access_key, field="ParquetIOManager.s3_secret_access_key"
                    ),
                    session_token=resolve_setting(
                        self.s3_session_token, field="ParquetIOManager.s3_session_token"
                    ),
                ),
            )
        return self._store


def _record_uris(
    context: dg.OutputContext, asset_key: dg.AssetKey, uris: Mapping[str, str]
) -> None:
    """Each partition's materialization in a range gets the URI of its own file."""
    try:
        step = context.step_context
    except dg.DagsterInvariantViolationError:  # a context built by hand: no events to attach to
        return
    for key, uri in uris.items():
        step.add_asset_metadata(
            {URI_METADATA_KEY: dg.MetadataValue.path(uri)}, asset_key=asset_key, partition_key=key
        )


def _masked(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dg.EnvVar):
        return f"EnvVar({value.env_var_name!r})"
    return "***"
