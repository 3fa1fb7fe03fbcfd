"""``dagster-daemon run`` under test: a code location written to a folder, its daemon started,
crashed and restarted.

``SIMULATED_RESOURCES`` is the resource block the generated ``defs.py`` files share: the
simulator as the endpoint, a SQLite ledger and Parquet tables in the test's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

#: The ``resources=`` of a generated ``defs.py`` (format with base_url, ledger and data).
SIMULATED_RESOURCES = """{{
        "llm": LLMResource(base_url={base_url!r}, api_key="sk-test", model="sim-small"),
        "ledger": ResponseLedger(sqlite_path={ledger!r}),
        "io_manager": ParquetIOManager(base_dir={data!r}),
    }}"""


class DaemonProcess:
    """``dagster-daemon run`` on a code location, in its own process group with its code server
    and run workers.

    Args:
        workdir: Its working directory; ``daemon.log`` is written there.
        env: Its environment (``DAGSTER_HOME`` names the instance).
        location: The code location arguments, e.g. ``["-w", "workspace.yaml"]``.
    """

    def __init__(self, workdir: Path, env: dict[str, str], location: Sequence[str]) -> None:
        self.workdir = workdir
        self.env = env
        self.location = list(location)
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", *self.location],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ends the whole process group: SIGTERM shuts down in order, SIGKILL is a crash."""
        if self.proc is None:
            return
        for signum, wait_s in ((sig, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None

    def wait_until(self, done: Callable[[], object], what: str, timeout_s: float = 180.0) -> None:
        """Waits until ``done()`` is truthy; fails with the log's tail if the daemon died."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} in {timeout_s:.0f} s:\n{self.log.read_text()[-5000:]}")
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            time.sleep(0.5)
