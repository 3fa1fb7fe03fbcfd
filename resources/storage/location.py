"""Where tables live: ``base_dir`` read as a folder or a URI, and shown without secrets.

A ``base_dir`` without ``://`` is a folder, taken literally (relative to the working
directory). With ``://`` it is a URI: ``file:///absolute/folder``, ``s3://bucket/prefix`` or
``gs://bucket/prefix`` (``gcs://`` too). Paths in these URIs are literal, never
percent-decoded, the way the ``aws`` and ``gcloud`` tools read them: the URIs this package
shows name files exactly as ``ls`` and ``aws s3 ls`` list them (``us%2Feast.parquet``), and
can be pasted back. Credentials, endpoints and regions are fields of the IO manager, never
parts of the URI, so a URI can be shown in metadata, logs and errors as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from llm_assets.resources.errors import UserError

SUPPORTED = "a folder, file:///absolute/folder, s3://bucket/prefix or gs://bucket/prefix"
_SCHEMES = {"file": "file", "s3": "s3", "gs": "gs", "gcs": "gs"}
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@")
_QUERY = re.compile(r"[?#].*$")
# S3 and GCS bucket names: lower-case letters, digits, dots, hyphens and (GCS) underscores.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def mask_uri(uri: str) -> str:
    """``uri`` without user information or query, for messages about a URI that had them.

    Examples:
        >>> mask_uri("s3://AKIA:secret@bucket/tables?secret_key=x")
        's3://***@bucket/tables?***'
        >>> mask_uri("s3://bucket/tables")
        's3://bucket/tables'
    """
    masked = _USERINFO.sub(r"\g<head>***@", uri)
    return _QUERY.sub(lambda m: m.group(0)[0] + "***", masked)


@dataclass(frozen=True)
class Location:
    """The storage root: a local folder or a bucket and key prefix in an object store.

    Attributes:
        scheme: ``file``, ``s3`` or ``gs``.
        root: The folder as given (``file``), or ``bucket`` or ``bucket/prefix``.
    """

    scheme: str
    root: str

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine's file system."""
        return self.scheme == "file"

    @property
    def bucket(self) -> str:
        """The bucket of an object-store location."""
        return self.root.split("/", 1)[0]

    def local_path(self, relative: PurePosixPath) -> Path:
        """The file ``relative`` to a local root."""
        return Path(self.root).joinpath(*relative.parts)

    def store_path(self, relative: PurePosixPath) -> str:
        """``bucket/prefix/relative``, the path ``pyarrow.fs`` expects for an object."""
        return f"{self.root}/{relative.as_posix()}"

    def uri(self, relative: PurePosixPath | None = None) -> str:
        """The URI of the root, or of the file ``relative`` to it.

        Examples:
            >>> parse_location("s3://bucket/tables").uri(PurePosixPath("a/b.parquet"))
            's3://bucket/tables/a/b.parquet'
            >>> parse_location("/srv/data").uri(PurePosixPath("a.parquet"))
            'file:///srv/data/a.parquet'
        """
        if self.is_local:
            path = Path(self.root) if relative is None else self.local_path(relative)
            absolute = path.absolute().as_posix()
            return f"file://{'' if absolute.startswith('/') else '/'}{absolute}"
        suffix = "" if relative is None else f"/{relative.as_posix()}"
        return f"{self.scheme}://{self.root}{suffix}"


def parse_location(base_dir: str) -> Location:
    """Reads ``ParquetIOManager.base_dir``: a folder or a ``file``, ``s3`` or ``gs`` URI.

    Args:
        base_dir: The field's value.

    Returns:
        The location.

    Raises:
        UserError: The scheme is not supported, the URI carries credentials or a query, or
            names no bucket. The message names the URI (masked) and the fix.

    Examples:
        >>> parse_location("data")
        Location(scheme='file', root='data')
        >>> parse_location("file:///srv/my data")
        Location(scheme='file', root='/srv/my data')
        >>> parse_location("s3://lake/llm/tables/")
        Location(scheme='s3', root='lake/llm/tables')
        >>> parse_location("gcs://lake")
        Location(scheme='gs', root='lake')
    """
    if "://" not in base_dir:
        if not base_dir:
            raise UserError(f"ParquetIOManager.base_dir is empty; set it to {SUPPORTED}")
        return Location("file", base_dir)
    shown = mask_uri(base_dir)
    parts = urlsplit(base_dir)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise UserError(
            f"ParquetIOManager.base_dir {shown!r} uses the scheme '{parts.scheme}', which is "
            f"not supported; set base_dir to {SUPPORTED}"
        )
    if "@" in parts.netloc:
        raise UserError(
            f"ParquetIOManager.base_dir {shown!r} carries credentials; remove them from the "
            "URI and pass s3_access_key_id=dg.EnvVar('AWS_ACCESS_KEY_ID') and "
            "s3_secret_access_key=dg.EnvVar('AWS_SECRET_ACCESS_KEY') (or use the provider's "
            "default credentials)"
        )
    if parts.query or parts.fragment:
        raise UserError(
            f"ParquetIOManager.base_dir {shown!r} has a query or fragment; remove it and set "
            "options as fields of ParquetIOManager (endpoint_url, s3_region)"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UserError(
                f"ParquetIOManager.base_dir {shown!r} names the host '{parts.netloc}'; a file "
                "URI must be local: file:///absolute/folder"
            )
        return Location("file", parts.path or "/")
    bucket = parts.netloc
    if not _BUCKET.match(bucket):
        raise UserError(
            f"ParquetIOManager.base_dir {shown!r} names no valid bucket "
            f"('{bucket}'); write it as {scheme}://bucket/prefix"
        )
    prefix = parts.path.strip("/")
    return Location(scheme, f"{bucket}/{prefix}" if prefix else bucket)
