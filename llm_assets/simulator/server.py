"""Running the simulator: in a daemon thread (tests) or in a child process (benchmarks, demo).

Both runners expose the same small API (``url``, ``base_url``, ``stats()``, ``configure()``,
``reset()``, ``advance_batches()``, context-manager use), implemented over HTTP so that it
behaves identically whichever side of a process boundary the server lives on.

A port another process already listens on raises ``PortInUseError`` (an ``OSError``) from
``start()`` of either runner, with a sentence that names the port and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import uvicorn

from llm_assets.simulator.app import SimulatorApp
from llm_assets.simulator.binding import (
    CLI_LISTEN_FAILED_STATUS,
    PortInUseError,
    bind_socket,
    port_in_use_message,
)
from llm_assets.simulator.config import SimulatorConfig

_START_TIMEOUT_S = 60.0  # the child imports dagster: seconds on a loaded machine
_STOP_TIMEOUT_S = 5.0
_BANNER_URL = re.compile(r"listening on (http://\S+?)(?=[\s,;]|$)")
# Loopback control calls must never be routed through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PYTHON_PORT_FIX = "stop it or pass another port (port=0 picks a free one)"


def build_uvicorn_server(app: SimulatorApp) -> uvicorn.Server:
    """Configure uvicorn for throughput: no access log, no lifespan, quick shutdown.

    Args:
        app: The simulator application.

    Returns:
        A server to ``run(sockets=[...])``.
    """
    config = uvicorn.Config(
        app,
        http="httptools" if find_spec("httptools") else "h11",
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        backlog=2048,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def url_for(sock: socket.socket) -> str:
    """Return ``http://host:port`` for a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _HttpControl(ABC):
    """``stats`` / ``configure`` / ``reset`` / ``advance_batches`` over the control plane."""

    url: str = ""

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` to give a client: ``url + "/v1"``."""
        return f"{self.url}/v1"

    def stats(self) -> dict[str, Any]:
        """Return the counters of ``GET /_simulator/stats``."""
        return self._call("GET", "/_simulator/stats")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime (see ``SimulatorConfig``); return the full config."""
        return self._call("POST", "/_simulator/config", knobs)

    def reset(self) -> None:
        """Zero counters and rate windows; the config is kept."""
        self._call("POST", "/_simulator/reset", {})

    def advance_batches(self, **body: Any) -> list[dict[str, Any]]:
        """Move batches on (``POST /_simulator/batches/advance``); return the batches moved.

        No argument moves every live batch one step; ``batch_id`` picks one batch, ``steps``
        takes several steps and ``to_end=True`` runs to the end.
        """
        return self._call("POST", "/_simulator/batches/advance", body)["data"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.url:
            raise RuntimeError("the simulator is not running; call start() first")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(f"simulator rejected {method} {path}: {detail}") from exc

    @abstractmethod
    def start(self) -> Self:
        """Start serving; return once the simulator accepts connections."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatorServer(_HttpControl):
    """The simulator served by uvicorn in a daemon thread of this process.

    Args:
        config: Initial knobs; defaults to ``SimulatorConfig()``.
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one (see ``url`` after ``start()``).

    Examples:
        >>> import openai
        >>> from llm_assets.simulator import SimulatorConfig, SimulatorServer
        >>> with SimulatorServer(SimulatorConfig(rpm=600, window_s=6.0)) as sim:
        ...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
        ...     reply = client.chat.completions.create(
        ...         model="sim-small", messages=[{"role": "user", "content": "hello"}]
        ...     )
        ...     sim.stats()["chat_completions"]
        1
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start serving and return once the port accepts connections.

        Returns:
            This server, so ``with SimulatorServer().start() as sim`` also reads well.

        Raises:
            PortInUseError: If another process already listens on the port.
            RuntimeError: If uvicorn does not come up within 15 seconds.
        """
        if self._thread is not None:
            return self
        try:
            sock = bind_socket(self.host, self.port)
        except PortInUseError as exc:
            message = port_in_use_message(self.host, self.port, _PYTHON_PORT_FIX)
            raise PortInUseError(errno.EADDRINUSE, message) from exc
        self._server = build_uvicorn_server(SimulatorApp(self.config.model_copy(deep=True)))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="llm-assets-simulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                self._thread = None
                raise RuntimeError("the simulator's uvicorn thread did not start; see its log")
            time.sleep(0.005)
        self.url = url_for(sock)
        self.port = sock.getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving; in-flight requests (e.g. injected slow ones) are abandoned."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(_STOP_TIMEOUT_S)
        self._server = None
        self._thread = None
        self.url = ""


class SimulatorProcess(_HttpControl):
    """The simulator in a child process (``python -m llm_assets.simulator``).

    Use it when the client under test should not share a GIL with the server, as in
    benchmarks. The config travels over the child's stdin, so API keys never appear in the
    process list.

    Args:
        config: Initial knobs; defaults to ``SimulatorConfig()``.
        host: Interface to listen on.
        port: Port to listen on; 0 lets the child pick a free one.

    Examples:
        >>> from llm_assets.simulator import SimulatorConfig, SimulatorProcess
        >>> with SimulatorProcess(SimulatorConfig(latency_ms=20, latency_jitter=0.3)) as sim:
        ...     sim.configure(fault_503=0.02)["fault_503"]
        0.02
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self.port = port
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    def start(self) -> Self:
        """Start the child and return once it listens.

        Returns:
            This runner.

        Raises:
            PortInUseError: If another process already listens on the port.
            RuntimeError: If the child exits or stays silent for 15 seconds; the message
                includes its stderr.
        """
        if self._process is not None:
            return self
        project_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
        # Kept open for the child's lifetime so a failed start can report what the child said.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "llm_assets.simulator", "--host", self.host]
        command += ["--port", str(self.port), "--config-json", "-"]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            text=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(self.config.model_dump_json())
        self._process.stdin.close()
        banner = _read_line(self._process.stdout, _START_TIMEOUT_S)
        match = _BANNER_URL.search(banner or "")
        if match is None:
            if banner == "":  # stdout closed: the child is exiting, let it finish its stderr
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(_STOP_TIMEOUT_S)
            status = self._process.poll()
            detail = self._child_stderr()
            self.stop()
            if status == CLI_LISTEN_FAILED_STATUS and (
                port_in_use_message(self.host, self.port) in detail
            ):
                message = port_in_use_message(self.host, self.port, _PYTHON_PORT_FIX)
                raise PortInUseError(errno.EADDRINUSE, message)
            raise RuntimeError(f"the simulator process did not start: {banner!r} {detail}")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 seconds)."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.url = ""

    def _child_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]


def _read_line(stream: IO[str], timeout_s: float) -> str | None:
    """Read one line with a timeout (a blocked readline cannot be interrupted otherwise)."""
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True)
    reader.start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        return None
