"""Reading and writing one Parquet file, on local disk or in an object store.

Both stores publish a file whole or not at all:

- ``LocalStore`` writes to a hidden temporary file in the same folder and renames it into
  place (``os.replace``), so a reader never sees half a file and a crash never leaves one
  under the final name.
- ``ObjectStore`` (S3 and S3-compatible servers, Google Cloud Storage, through ``pyarrow.fs``)
  serializes the table in memory first, then sends it in one upload: a single PUT for files
  under pyarrow's part size (10 MiB), above it a multipart upload that the store publishes
  only when its last part has arrived. Nothing is sent if serialization fails.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from llm_assets.resources.errors import UserError
from llm_assets.resources.llm import OFFLINE_ENV, is_loopback
from llm_assets.resources.storage.location import Location

# S3-compatible servers (MinIO, Ceph, moto) answer to any region; naming one when an endpoint
# is given without a region keeps the SDK from probing the EC2 metadata service for it.
_DEFAULT_ENDPOINT_REGION = "us-east-1"


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


def parquet_bytes(df: pd.DataFrame) -> pa.Buffer:
    """``df`` as the bytes of a Parquet file, ready for one upload.

    Examples:
        >>> data = parquet_bytes(pd.DataFrame({"a": [1, 2]}))
        >>> pq.read_table(pa.BufferReader(data)).num_rows
        2
    """
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), sink)
    return sink.getvalue()


class TableStore(Protocol):
    """Parquet files under one root, each addressed by its path relative to the root."""

    location: Location

    def write(self, relative: PurePosixPath, df: pd.DataFrame) -> None:
        """Publishes ``df`` as the file ``relative``, whole or not at all."""

    def read(self, relative: PurePosixPath) -> pd.DataFrame | None:
        """The file ``relative`` as a DataFrame, or ``None`` when there is none."""

    def check(self) -> None:
        """Raises ``UserError`` when the root cannot hold files (a missing bucket)."""


@dataclass
class LocalStore:
    """Files in a folder of this machine.

    Examples:
        >>> import tempfile
        >>> from llm_assets.resources.storage.location import parse_location
        >>> store = LocalStore(parse_location(tempfile.mkdtemp()))
        >>> store.write(PurePosixPath("a/b.parquet"), pd.DataFrame({"x": [1]}))
        >>> store.read(PurePosixPath("a/b.parquet"))["x"].tolist()
        [1]
        >>> store.read(PurePosixPath("a/missing.parquet")) is None
        True
    """

    location: Location

    def write(self, relative: PurePosixPath, df: pd.DataFrame) -> None:
        """Writes through a temporary file renamed into place."""
        write_parquet_atomic(df, self.location.local_path(relative))

    def read(self, relative: PurePosixPath) -> pd.DataFrame | None:
        """Reads the file, or ``None`` when it does not exist."""
        path = self.location.local_path(relative)
        return pd.read_parquet(path) if path.exists() else None

    def check(self) -> None:
        """Nothing to check: folders are created as files are written."""


@dataclass
class ObjectStore:
    """Objects in a bucket of S3, an S3-compatible server or Google Cloud Storage."""

    location: Location
    filesystem: pafs.FileSystem
    endpoint: str

    def write(self, relative: PurePosixPath, df: pd.DataFrame) -> None:
        """Serializes in memory, then sends the whole file in one upload."""
        data = parquet_bytes(df)
        path = self.location.store_path(relative)
        try:
            stream = self.filesystem.open_output_stream(path)
            # One write of the complete file, then close: no code of ours can fail between
            # the two and leave a closed (hence published) half of it.
            stream.write(data)
            stream.close()
        except OSError as error:
            raise self._failure("write", relative, error) from error

    def read(self, relative: PurePosixPath) -> pd.DataFrame | None:
        """Reads the object, or ``None`` when it does not exist."""
        try:
            # One GET for the whole file: a Parquet reader on the remote file would make a
            # request per footer and column chunk.
            with self.filesystem.open_input_stream(self.location.store_path(relative)) as stream:
                data = stream.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._failure("read", relative, error) from error
        return pd.read_parquet(pa.BufferReader(data))

    def check(self) -> None:
        """Raises ``UserError`` naming the URI and the fix when the bucket does not exist."""
        try:
            info = self.filesystem.get_file_info(self.location.bucket)
        except OSError as error:
            raise OSError(
                f"cannot reach the bucket of {self.location.uri()} at {self.endpoint}: {error}; "
                "check ParquetIOManager.endpoint_url, s3_region and the credentials"
            ) from error
        if info.type == pafs.FileType.NotFound:
            raise self._missing_bucket()

    def _missing_bucket(self) -> UserError:
        bucket = self.location.bucket
        create = "aws s3 mb" if self.location.scheme == "s3" else "gcloud storage buckets create"
        return UserError(
            f"the bucket '{bucket}' of ParquetIOManager.base_dir {self.location.uri()!r} does "
            f"not exist at {self.endpoint}; create it ({create} {self.location.scheme}://"
            f"{bucket}) or point base_dir (and endpoint_url) at an existing bucket"
        )

    def _failure(self, action: str, relative: PurePosixPath, error: OSError) -> Exception:
        try:
            missing = (
                self.filesystem.get_file_info(self.location.bucket).type == pafs.FileType.NotFound
            )
        except OSError:
            missing = False
        if missing:
            return self._missing_bucket()
        return OSError(f"could not {action} {self.location.uri(relative)}: {error}")


@dataclass(frozen=True)
class ObjectStoreSettings:
    """How to reach an object store; the secrets are resolved values, never shown."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:
        return (
            f"ObjectStoreSettings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"credentials={'given' if self.access_key_id else 'default chain'})"
        )


def open_store(location: Location, settings: ObjectStoreSettings) -> TableStore:
    """The store of ``location``: a ``LocalStore``, or an ``ObjectStore`` over ``pyarrow.fs``.

    Raises:
        UserError: ``endpoint_url`` is not an ``http(s)://host[:port]`` URL, only one of the
            S3 key id and secret is set, or ``LLM_ASSETS_OFFLINE`` is set and the store is not
            on this machine.

    Examples:
        >>> from llm_assets.resources.storage.location import parse_location
        >>> store = open_store(
        ...     parse_location("s3://lake/tables"),
        ...     ObjectStoreSettings(endpoint_url="http://127.0.0.1:9000",
        ...                         access_key_id="id", secret_access_key="secret"),
        ... )
        >>> store.endpoint, type(store.filesystem).__name__
        ('http://127.0.0.1:9000', 'S3FileSystem')
    """
    if location.is_local:
        return LocalStore(location)
    endpoint = _endpoint(settings.endpoint_url)
    shown = settings.endpoint_url or (
        "AWS S3" if location.scheme == "s3" else "Google Cloud Storage"
    )
    offline = os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes")
    if offline and not (settings.endpoint_url and is_loopback(settings.endpoint_url)):
        raise UserError(
            f"{OFFLINE_ENV} is set, so storage may only be on this machine, but "
            f"ParquetIOManager.base_dir is {location.uri()!r} at {shown}; set endpoint_url to "
            f"a local server or unset {OFFLINE_ENV}"
        )
    if location.scheme == "s3":
        filesystem: pafs.FileSystem = _s3(settings, endpoint)
    else:
        filesystem = _gcs(endpoint)
    return ObjectStore(location, filesystem, shown)


def _endpoint(endpoint_url: str | None) -> tuple[str, str] | None:
    """``(scheme, host:port)`` of an ``http(s)://host[:port]`` URL."""
    if endpoint_url is None:
        return None
    parts = urlsplit(endpoint_url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
    ):
        raise UserError(
            f"ParquetIOManager.endpoint_url {endpoint_url!r} is not an http(s)://host[:port] "
            "URL; write it like http://127.0.0.1:9000 (no path, no credentials)"
        )
    return parts.scheme, parts.netloc


def _s3(settings: ObjectStoreSettings, endpoint: tuple[str, str] | None) -> pafs.S3FileSystem:
    if bool(settings.access_key_id) != bool(settings.secret_access_key):
        raise UserError(
            "ParquetIOManager has only one of s3_access_key_id and s3_secret_access_key; set "
            "both (dg.EnvVar('AWS_ACCESS_KEY_ID'), dg.EnvVar('AWS_SECRET_ACCESS_KEY')) or "
            "neither, to use the AWS default credentials"
        )
    region = settings.region
    if region is None and endpoint is not None:
        region = (
            os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or _DEFAULT_ENDPOINT_REGION
        )
    return pafs.S3FileSystem(
        access_key=settings.access_key_id or None,
        secret_key=settings.secret_access_key or None,
        session_token=settings.session_token or None,
        region=region,
        scheme=endpoint[0] if endpoint else None,
        endpoint_override=endpoint[1] if endpoint else None,
        # Opening an output stream then sends nothing; closing it sends one PutObject
        # (or completes a multipart upload for a large file).
        allow_delayed_open=True,
    )


def _gcs(endpoint: tuple[str, str] | None) -> pafs.GcsFileSystem:
    # Credentials: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud,
    # or the metadata server of the machine); an emulator takes none.
    if endpoint is None:
        return pafs.GcsFileSystem()
    return pafs.GcsFileSystem(scheme=endpoint[0], endpoint_override=endpoint[1], anonymous=True)
