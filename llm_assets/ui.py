"""``python -m llm_assets ui``: the Dagster UI and daemon beside the simulator, stopped as one.

``ui`` serves a code location (``-w workspace.yaml``, ``-m module``, ``-f file.py``; by default
``./workspace.yaml``, else the ``[tool.dagster]`` block of ``./pyproject.toml``, as ``dagster
dev`` finds them) on the instance in ``$DAGSTER_HOME`` (default ``./.dagster_home``, created
with a minimal ``dagster.yaml`` when missing). The simulator's URL is exported to the code as
``LLM_ASSETS_BASE_URL``, for its resources to read. It starts two children, each the leader of
a new session, so that its process group holds everything it starts in turn:

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
MINIMAL_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
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


def prepare_local_home() -> Path:
    """Creates ``$DAGSTER_HOME`` (default ``./.dagster_home``) for the embedded SQLite instance.

    A missing ``dagster.yaml`` is written with telemetry off; an existing one is kept. The
    choice is exported as ``DAGSTER_HOME``, for the code and the processes started after.

    Returns:
        The absolute path of the instance folder.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(MINIMAL_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def code_location(
    workspace: str | None = None,
    module_name: str | None = None,
    python_file: str | None = None,
) -> list[str]:
    """The ``dagster dev`` arguments that name the code location to serve.

    Give at most one of the arguments. With none, ``./workspace.yaml`` (or ``workspace.yml``)
    when there is one, else the ``[tool.dagster]`` block of ``./pyproject.toml``, which
    ``dagster dev`` reads itself.

    Args:
        workspace: A workspace file.
        module_name: An importable module holding a ``Definitions``.
        python_file: A Python file holding a ``Definitions``.

    Returns:
        The arguments, e.g. ``["-w", "workspace.yaml"]``; empty for ``[tool.dagster]``.

    Raises:
        UserError: More than one is given, a file does not exist, or none is given and this
            folder has neither a workspace file nor a ``[tool.dagster]`` block.

    Examples:
        >>> code_location(module_name="my_project.definitions")
        ['-m', 'my_project.definitions']
    """
    given = [
        (flag, value)
        for flag, value in (("-w", workspace), ("-m", module_name), ("-f", python_file))
        if value
    ]
    if len(given) > 1:
        raise UserError("give one code location: -w YAML, -m MODULE or -f FILE")
    if given:
        ((flag, value),) = given
        if flag != "-m" and not Path(value).is_file():
            raise UserError(f"{value} does not exist (in {os.getcwd()})")
        return [flag, value]
    for name in ("workspace.yaml", "workspace.yml"):
        if Path(name).is_file():
            return ["-w", name]
    from dagster._cli.utils import has_pyproject_dagster_block

    if has_pyproject_dagster_block("pyproject.toml"):
        return []
    raise UserError(
        f"no code location given and neither workspace.yaml nor a [tool.dagster] block in "
        f"pyproject.toml in {os.getcwd()}: pass -w YAML, -m MODULE or -f FILE"
    )


def ui_children(
    port: int, simulator_port: int, env: dict[str, str], location: Sequence[str] = ()
) -> list[Child]:
    """The simulator and ``dagster dev`` on 127.0.0.1, as ``ui`` runs them.

    Args:
        port: Port of the Dagster UI.
        simulator_port: Port of the simulator.
        env: The children's environment.
        location: ``dagster dev``'s code location arguments (see ``code_location``).

    Returns:
        The simulator, then ``dagster dev``.
    """
    config = SimulatorConfig(latency_ms=20.0, latency_jitter=0.3)
    simulator = [sys.executable, "-m", "llm_assets.simulator", "--host", "127.0.0.1"]
    dev = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), *location]
    return [
        Child(
            "the simulator",
            [*simulator, "--port", str(simulator_port), "--config-json", "-"],
            env=env,
            stdin=config.model_dump_json().encode(),
        ),
        Child("dagster dev", dev, stop_signal=signal.SIGINT, env=env),
    ]


def run_ui(
    port: int = 3000, simulator_port: int = 8765, location: Sequence[str] | None = None
) -> int:
    """Runs the Dagster UI, the daemon and the simulator until a stop signal or a crash.

    Args:
        port: Port of the Dagster UI on 127.0.0.1.
        simulator_port: Port of the simulator; 0 or a busy port picks a free one.
        location: ``dagster dev``'s code location arguments; ``None`` finds them as
            ``code_location()`` does.

    Returns:
        0 after Ctrl-C, SIGTERM or SIGHUP; 1 when a process died on its own.

    Raises:
        UserError: ``port`` is already in use, or no code location is found.

    Examples:
        .. code-block:: python

            from llm_assets.ui import code_location, run_ui

            # open http://127.0.0.1:3000; Ctrl-C stops everything
            run_ui(port=3000, location=code_location(module_name="my_project.definitions"))
    """
    location = code_location() if location is None else list(location)
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
        children = ui_children(port, simulator_port, env, location)
        return _serve(supervisor, children, simulator_url, ui_url)


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
