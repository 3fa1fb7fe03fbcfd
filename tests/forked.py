"""A command's ``main`` run as a program of its own, in a process forked from a server.

The server (``multiprocessing``'s fork server) has imported Dagster, pandas, pyarrow, openai and
the library once; each process forked from it then sets the environment, working directory
and ``sys.path[0]`` a command line would have, sends its output to files and calls the
function. So a test gets what ``python -m ...`` in a fresh process gives (its own process,
environment and exit status, nothing of the test's state), without importing everything again.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

_FORKS = multiprocessing.get_context("forkserver")
#: What the fork server imports once. It is one server per test process, whichever test starts it
#: (tests/test_docs.py sets the same list).
PRELOAD = ["dagster", "pandas", "pyarrow.parquet", "openai", "llm_assets"]
#: ``python -m llm_assets``.
LLM_ASSETS_MAIN = "llm_assets.__main__:main"


def _child(
    function: str, args: tuple[Any, ...], env: dict[str, str], cwd: str, out: str, err: str
) -> None:
    for path, fd in ((out, 1), (err, 2)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as `python -m` puts the working directory first
    module, name = function.split(":")
    sys.exit(getattr(importlib.import_module(module), name)(*args))


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class ForkedProcess:
    """A running function; its standard output and error go to ``stdout`` and ``stderr``."""

    process: BaseProcess
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def poll(self) -> int | None:
        """The exit status (``-9`` when SIGKILLed), or ``None`` while it runs."""
        return self.process.exitcode

    def wait(self, timeout_s: float) -> int:
        """Waits for the exit status; fails past ``timeout_s``."""
        self.process.join(timeout_s)
        status = self.process.exitcode
        if status is None:
            self.kill()
            raise AssertionError(f"still running after {timeout_s} s:\n{self.output()[-3000:]}")
        return status

    def kill(self) -> None:
        self.process.kill()
        self.process.join(30)

    def output(self) -> str:
        """Standard output, then standard error."""
        return "".join(_read(path) for path in (self.stdout, self.stderr))


def start(function: str, *args: Any, env: dict[str, str], cwd: Path, logs: Path) -> ForkedProcess:
    """Starts ``function`` (``"module:name"``) with ``args``, ``env`` as its whole environment.

    Its exit status is what the function returns; its output goes to ``<logs>.out`` and
    ``<logs>.err``.
    """
    multiprocessing.set_forkserver_preload(PRELOAD)
    out, err = logs.parent / f"{logs.name}.out", logs.parent / f"{logs.name}.err"
    process = _FORKS.Process(
        target=_child, args=(function, args, env, str(cwd), str(out), str(err))
    )
    process.start()
    return ForkedProcess(process, out, err)


@dataclass(frozen=True)
class Finished:
    """How a forked function ended: the fields of ``subprocess.CompletedProcess`` tests read."""

    returncode: int
    stdout: str
    stderr: str


def run(
    function: str,
    *args: Any,
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    timeout_s: float = 180,
) -> Finished:
    """Runs ``function`` to its end (see ``start``)."""
    forked = start(function, *args, env=env, cwd=cwd, logs=logs)
    status = forked.wait(timeout_s)
    return Finished(status, _read(forked.stdout), _read(forked.stderr))
