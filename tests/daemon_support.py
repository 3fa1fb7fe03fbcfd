"""``dagster-daemon run`` under test: a code location written to a folder, its daemon started,
crashed and restarted.

``SIMULATED_RESOURCES`` is the resource block the generated ``defs.py`` files share: the
simulator as the endpoint, a SQLite ledger and Parquet tables in the test's folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from llm_assets.supervisor import Child, Supervisor

BIN = Path(sys.executable).parent

#: The ``resources=`` of a generated ``defs.py`` (format with base_url, ledger and data).
SIMULATED_RESOURCES = """{{
        "llm": LLMResource(base_url={base_url!r}, api_key="sk-test", model="sim-small"),
        "ledger": ResponseLedger(sqlite_path={ledger!r}),
        "io_manager": ParquetIOManager(base_dir={data!r}),
    }}"""


class DaemonProcess:
    """``dagster-daemon run`` on a code location, started and stopped by the library's
    ``Supervisor``: in a process group of its own with its code server and run workers.

    Args:
        workdir: Where ``daemon.log`` is written.
        env: Its environment (``DAGSTER_HOME`` names the instance).
        location: The code location arguments with absolute paths, e.g. ``["-w", "/x/w.yaml"]``.
    """

    def __init__(self, workdir: Path, env: dict[str, str], location: Sequence[str]) -> None:
        self.workdir = workdir
        self.env = env
        self.location = list(location)
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._supervisor: Supervisor | None = None

    def start(self) -> None:
        self._supervisor = Supervisor(grace_s=30.0, terminate_s=10.0)
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            argv = [str(BIN / "dagster-daemon"), "run", *self.location]
            self.proc = self._supervisor.start(
                Child("dagster-daemon", argv, env=self.env, stdout=log)
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ends the whole process group: SIGTERM shuts down in order, SIGKILL is a crash."""
        if self.proc is None or self._supervisor is None:
            return
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._supervisor.stop()
        self.proc = self._supervisor = None

    def wait_until(self, done: Callable[[], object], what: str, timeout_s: float = 180.0) -> None:
        """Waits until ``done()`` is truthy; fails with the log's tail if the daemon died."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} in {timeout_s:.0f} s:\n{self.log.read_text()[-5000:]}")
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            time.sleep(0.5)
