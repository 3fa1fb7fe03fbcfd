"""Child processes stopped as one: ``Supervisor`` runs each in a session of its own.

Each child is the leader of a new session, so that its process group holds everything it
starts in turn. Stopping sends each group its child's stop signal (``dagster dev`` gets the
SIGINT a Ctrl-C would send it, so it shuts its services down in order); what is still alive
after a grace period gets SIGTERM, then SIGKILL. If an essential child exits on its own, the
others are stopped the same way. Only a SIGKILL to the supervising process itself can leave
the groups behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.25


@dataclass
class Child:
    """One command ``Supervisor`` runs in a session of its own."""

    name: str
    argv: list[str]
    stop_signal: int = signal.SIGTERM
    env: dict[str, str] | None = field(default=None, repr=False)
    stdin: bytes | None = None
    #: Where its output goes (stderr too); by default, this process's own stdout and stderr.
    stdout: IO[bytes] | None = field(default=None, repr=False)
    #: Whether its exit stops the others (a helper page that failed to start need not).
    essential: bool = True
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
        """The first essential child that has exited, if any."""
        for child in self.children:
            if child.essential and child.process is not None and child.process.poll() is not None:
                return child
        return None

    def alive(self) -> list[int]:
        """Pids still running in the children's process groups."""
        for child in self.children:
            if child.process is not None:
                child.process.poll()  # reaps the leader, so it stops counting
        return group_members({c.process.pid for c in self.children if c.process is not None})

    def wait(self) -> int:
        """Waits until a stop signal arrives or an essential child exits, then stops every group.

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
                say(f"llm-assets ui: {gone.name} {how}; stopping the other processes", sys.stderr)
                self.stop()
                return 1
            time.sleep(POLL_S)
        name = signal.Signals(self.stop_requested).name
        say(f"llm-assets ui: {name} received; stopping every process it started", sys.stderr)
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
                time.sleep(POLL_S)
        left = self.alive()
        if left:
            say(f"llm-assets ui: processes {left} survived SIGKILL", sys.stderr)

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        # A group whose members are all gone (a helper child that exited long ago) is not
        # signalled: its id may since have been reused by someone else's process group.
        if not group_members({pgid}):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def say(message: str, stream: TextIO | None = None) -> None:
    """One line for the person at the terminal (children write to the same one)."""
    stream = stream or sys.stdout
    stream.write(message + "\n")
    stream.flush()
