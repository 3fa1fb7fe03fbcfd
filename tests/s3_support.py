"""A real S3 API on this machine: moto's server on a free loopback port, started by the test.

``moto_s3`` (session) is the server, in a thread of the test process, so subprocesses the
test starts (Dagster step processes, Celery workers) reach it too while the test runs. It
records every request it serves, so a test can assert how a file was uploaded.
``s3_bucket`` (per test) is a fresh bucket, with the credentials exported under
``S3_KEY_ID_VAR`` / ``S3_SECRET_VAR`` for ``dg.EnvVar``; ``s3_io_manager`` is the
``ParquetIOManager`` that stores tables in it.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow.fs as pafs
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from llm_assets.resources.storage import ParquetIOManager

S3_KEY_ID_VAR = "LLM_ASSETS_TEST_S3_KEY_ID"
S3_SECRET_VAR = "LLM_ASSETS_TEST_S3_SECRET"
S3_KEY_ID = "AKIATESTLLMASSETS0001"
S3_SECRET = "s3-secret-DO-NOT-LEAK-6b0d2f9a41"

# The AWS SDK must never look for credentials or a region on the network (EC2 metadata).
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@dataclass(frozen=True)
class S3Request:
    """One request the server answered."""

    method: str
    path: str
    query: str
    status: int


class MotoS3:
    """moto's S3 server on ``127.0.0.1:<free port>``, recording the requests it serves."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self._app = DomainDispatcherApplication(create_backend_app)
        self._lock = threading.Lock()
        self.requests: list[S3Request] = []
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._recording_app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> MotoS3:
        """Serves in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def filesystem(self, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
        """A pyarrow client of this server (for the test's own checks)."""
        return pafs.S3FileSystem(
            access_key=S3_KEY_ID,
            secret_key=S3_SECRET,
            endpoint_override=self.endpoint_url.removeprefix("http://"),
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=allow_bucket_creation,
        )

    def create_bucket(self, name: str) -> None:
        """Creates an empty bucket."""
        self.filesystem(allow_bucket_creation=True).create_dir(name)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in ``bucket``, sorted."""
        infos = self.filesystem().get_file_info(pafs.FileSelector(bucket, recursive=True))
        return sorted(
            info.path.removeprefix(f"{bucket}/")
            for info in infos
            if info.type == pafs.FileType.File
        )

    def read(self, bucket: str, key: str) -> bytes:
        """The bytes of one object."""
        with self.filesystem().open_input_stream(f"{bucket}/{key}") as stream:
            return bytes(stream.read())

    def requests_for(self, bucket: str) -> list[S3Request]:
        """The recorded requests to ``bucket`` and its objects, in order."""
        with self._lock:
            return [r for r in self.requests if r.path.split("/")[1:2] == [bucket]]

    def _recording_app(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        status: list[int] = []

        def recording_start_response(code: str, *args: Any, **kwargs: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, *args, **kwargs)

        body = self._app(environ, recording_start_response)
        with self._lock:
            self.requests.append(
                S3Request(
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    environ.get("QUERY_STRING", ""),
                    status[0] if status else 0,
                )
            )
        return body


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server for the whole session, on a free loopback port."""
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class S3Bucket:
    """A fresh bucket on the test server."""

    server: MotoS3
    name: str

    def io_manager(self, prefix: str = "tables") -> ParquetIOManager:
        """A ``ParquetIOManager`` on ``s3://<bucket>/<prefix>``, keys through ``dg.EnvVar``."""
        return s3_io_manager(self.server, f"s3://{self.name}/{prefix}")

    def object_keys(self) -> list[str]:
        """Every object key in the bucket."""
        return self.server.keys(self.name)


def s3_io_manager(server: MotoS3, base_dir: str) -> ParquetIOManager:
    """A ``ParquetIOManager`` on ``base_dir`` at ``server``, keys through ``dg.EnvVar``."""
    return ParquetIOManager(
        base_dir=base_dir,
        endpoint_url=server.endpoint_url,
        s3_access_key_id=dg.EnvVar(S3_KEY_ID_VAR),
        s3_secret_access_key=dg.EnvVar(S3_SECRET_VAR),
    )


@pytest.fixture
def s3_bucket(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A new, empty bucket, with the test credentials exported for ``dg.EnvVar``."""
    monkeypatch.setenv(S3_KEY_ID_VAR, S3_KEY_ID)
    monkeypatch.setenv(S3_SECRET_VAR, S3_SECRET)
    name = f"test-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(name)
    return S3Bucket(moto_s3, name)
