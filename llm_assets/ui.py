"""``python -m llm_assets ui``: the Dagster UI and daemon beside the simulator, stopped as one.

``ui`` starts two children, each the leader of a new session, so that its process group holds
everything it starts in turn:

- the simulator (``python -m llm_assets.simulator``);
- ``dagster dev``: the webserver, the daemon, the code server and any run workers.

SIGINT, SIGTERM or SIGHUP to ``ui`` stops the whole tree. Each group gets its child's stop
signal (``dagster dev`` gets the SIGINT a Ctrl-C would send it, so it shuts its services down
in order; the simulator gets SIGTERM); what is still alive after a grace period gets SIGTERM,
then SIGKILL. If a child exits on its own, the others are stopped the same way and ``ui``
exits with status 1. Only a SIGKILL to ``ui`` itself can leave the groups behind.

Since the children are not in the terminal's process group, a Ctrl-C reaches ``ui`` alone,
and ``ui`` decides the order of the shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from llm_assets.resources.errors import UserError
from llm_assets.simulator import SimulatorConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_POLL_S = 0.25
# Loopback readiness checks must never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Child:
    """One command ``Supervisor`` runs in a session of its own."""

    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] | None = None
    stdin: bytes | None = None
    #: Where its output goes (stderr too); by default, this process's own stdout and stderr.
    stdout: IO[bytes] | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def group_members(pgids: set[int]) -> list[int]:
    """Live (non-zombie) processes in the given process groups.

    An orphan whose parent is gone stays a zombie until init reaps it, and some container
    inits never do, so zombies are not counted: they hold no resources but a pid.

    Args:
        pgids: Process group ids.

    Returns:
        The pids of their members that still run.
    """
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the kernel counts zombies as members
        alive = []
        for pgid in pgids:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            alive.append(pgid)
        return alive
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in parentheses may hold spaces; the fields after it do not.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in pgids and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class Supervisor:
    """Runs children in sessions of their own and stops each one's whole process group.

    Args:
        grace_s: How long the children's own stop signals have before SIGTERM.
        terminate_s: How long SIGTERM has before SIGKILL.

    While entered as a context manager, SIGINT, SIGTERM and SIGHUP set ``stop_requested``
    instead of interrupting, and leaving it stops every group.

    Examples:
        >>> with Supervisor(grace_s=1.0) as supervisor:
        ...     _ = supervisor.start(Child("sleeper", ["sleep", "60"]))
        >>> supervisor.alive()
        []
    """

    def __init__(self, grace_s: float = 15.0, terminate_s: float = 5.0) -> None:
        self.grace_s = grace_s
        self.terminate_s = terminate_s
        self.children: list[Child] = []
        self.stop_requested: int | None = None
        self._previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def __enter__(self) -> Supervisor:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = signum

    def start(self, child: Child) -> subprocess.Popen[bytes]:
        """Starts ``child`` as the leader of a new session (and so of a new process group)."""
        child.process = subprocess.Popen(
            child.argv,
            env=child.env,
            stdin=subprocess.PIPE if child.stdin is not None else None,
            stdout=child.stdout,
            stderr=subprocess.STDOUT if child.stdout is not None else None,
            start_new_session=True,
        )
        self.children.append(child)
        if child.stdin is not None and child.process.stdin is not None:
            child.process.stdin.write(child.stdin)
            child.process.stdin.close()
        return child.process

    def exited(self) -> Child | None:
        """The first child that has exited, if any."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                return child
        return None

    def alive(self) -> list[int]:
        """Pids still running in the children's process groups."""
        for child in self.children:
            if child.process is not None:
                child.process.poll()  # reaps the leader, so it stops counting
        return group_members({c.process.pid for c in self.children if c.process is not None})

    def wait(self) -> int:
        """Waits until a stop signal arrives or a child exits, then stops every group.

        Returns:
            0 after a stop signal, 1 when a child exited on its own.
        """
        while self.stop_requested is None:
            gone = self.exited()
            if gone is not None:
                assert gone.process is not None
                status = gone.process.returncode
                how = (
                    f"was killed by {signal.Signals(-status).name}"
                    if status < 0
                    else f"exited with status {status}"
                )
                _say(f"llm-assets ui: {gone.name} {how}; stopping the other processes", sys.stderr)
                self.stop()
                return 1
            time.sleep(_POLL_S)
        name = signal.Signals(self.stop_requested).name
        _say(f"llm-assets ui: {name} received; stopping every process it started", sys.stderr)
        self.stop()
        return 0

    def stop(self) -> None:
        """Stop signal to each group, then SIGTERM, then SIGKILL to what is left."""
        steps: list[tuple[int | None, float]] = [
            (None, self.grace_s),
            (signal.SIGTERM, self.terminate_s),
            (signal.SIGKILL, 5.0),
        ]
        for signum, timeout_s in steps:
            if not self.alive():
                return
            for child in self.children:
                if child.process is not None:
                    self._signal_group(child.process.pid, signum or child.stop_signal)
            deadline = time.monotonic() + timeout_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        left = self.alive()
        if left:
            _say(f"llm-assets ui: processes {left} survived SIGKILL", sys.stderr)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def _say(message: str, stream: TextIO | None = None) -> None:
    """One line for the person at the terminal (children write to the same one)."""
    stream = stream or sys.stdout
    stream.write(message + "\n")
    stream.flush()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: connections of a stopped server lingering in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status, even 401, counts)."""
    try:
        with _OPENER.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def ui_children(port: int, simulator_port: int, env: dict[str, str]) -> list[Child]:
    """The simulator and ``dagster dev`` on 127.0.0.1, as ``ui`` runs them.

    ``dagster dev`` loads ``./workspace.yaml`` when there is one, else the example's module.
    """
    config = SimulatorConfig(latency_ms=20.0, latency_jitter=0.3)
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").is_file() else []
    target = target or ["-m", "llm_assets.definitions"]
    simulator = [sys.executable, "-m", "llm_assets.simulator", "--host", "127.0.0.1"]
    dev = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), *target]
    return [
        Child(
            "the simulator",
            [*simulator, "--port", str(simulator_port), "--config-json", "-"],
            env=env,
            stdin=config.model_dump_json().encode(),
        ),
        Child("dagster dev", dev, stop_signal=signal.SIGINT, env=env),
    ]


def run_ui(port: int = 3000, simulator_port: int = 8765) -> int:
    """Runs the Dagster UI, the daemon and the simulator until a stop signal or a crash.

    Args:
        port: Port of the Dagster UI on 127.0.0.1.
        simulator_port: Port of the simulator; 0 or a busy port picks a free one.

    Returns:
        0 after Ctrl-C, SIGTERM or SIGHUP; 1 when a process died on its own.

    Raises:
        UserError: ``port`` is already in use.

    Examples:
        .. code-block:: python

            from llm_assets.ui import run_ui

            run_ui(port=3000)  # open http://127.0.0.1:3000; Ctrl-C stops everything
    """
    from llm_assets.demo import prepare_local_home

    if not _port_free(port):
        raise UserError(f"port {port} is already in use on 127.0.0.1: pass --port <free port>")
    if simulator_port == 0 or not _port_free(simulator_port):
        if simulator_port:
            _say(f"port {simulator_port} is in use; the simulator takes a free one")
        simulator_port = _any_free_port()
    home = prepare_local_home()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    env = dict(os.environ, DAGSTER_HOME=str(home), LLM_ASSETS_BASE_URL=f"{simulator_url}/v1")
    ui_url = f"http://127.0.0.1:{port}"
    supervisor = Supervisor()
    with supervisor:
        return _serve(supervisor, ui_children(port, simulator_port, env), simulator_url, ui_url)


def _serve(supervisor: Supervisor, children: Sequence[Child], simulator_url: str, ui: str) -> int:
    simulator, dev = children
    supervisor.start(simulator)
    deadline = time.monotonic() + 20
    while not _answers(f"{simulator_url}/v1/models"):
        if supervisor.stop_requested is not None or supervisor.exited():
            return supervisor.wait()
        if time.monotonic() > deadline:
            _say(f"llm-assets ui: the simulator did not answer on {simulator_url}", sys.stderr)
            return 1
        time.sleep(_POLL_S)
    _say(f"simulator at {simulator_url}; starting the Dagster UI on {ui}")
    supervisor.start(dev)
    while supervisor.stop_requested is None and not supervisor.exited():
        if _answers(f"{ui}/server_info"):
            _say(f"Dagster UI ready at {ui} (Ctrl-C stops everything)")
            break
        time.sleep(1.0)
    return supervisor.wait()
