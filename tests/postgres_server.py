"""A PostgreSQL server of a test's own, for tests that stop and start it.

The server is made with the installed PostgreSQL's ``initdb`` in a temporary folder and run
with ``pg_ctl`` on a free port of 127.0.0.1, so stopping it cuts no connection of any other
test: such a test runs beside the rest of the suite. PostgreSQL refuses to run as root; as
root it runs as the ``postgres`` user (through ``runuser``). Without ``initdb`` the test skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.webserver_support import free_port


def _bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's newest, else the one on ``PATH``."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``stop()`` and ``start()`` it; ``url`` is its ``postgres`` database."""

    data_dir: Path
    port: int
    bin_dir: Path
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        log = self.data_dir / "server.log"
        assert done.returncode == 0 or not check, (
            f"{' '.join(command)}: {done.stdout}{done.stderr}"
            + (log.read_text()[-3000:] if log.exists() else "")
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self.data_dir / "server.log")
        self._pg_ctl("-l", log, "-o", options, "-w", "-t", "120", "start")

    def stop(self) -> None:
        """Stops the server the way a service restart does (``pg_ctl stop -m fast``)."""
        self._pg_ctl("-m", "fast", "-w", "-t", "120", "stop")

    def kill(self) -> None:
        """Ends the server at once, if it runs (``pg_ctl stop -m immediate``)."""
        self._pg_ctl("-m", "immediate", "stop", check=False)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A new, running server; stopped and deleted afterwards. Skips the test without one."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
    run_as: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL will not run as root and there is no postgres user")
        run_as = ["runuser", "-u", "postgres", "--"]
    # Outside pytest's root-only temporary folder, so that the postgres user can reach it.
    data_dir = Path(tempfile.mkdtemp(prefix="llm_assets_pg_"))
    if run_as:
        os.chown(data_dir, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(data_dir, free_port(), bin_dir, run_as)
    try:
        initdb = [*run_as, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres"]
        initdb += ["-A", "trust", "--no-sync", "--no-instructions", "-E", "UTF8"]
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        server.start()
        try:
            yield server
        finally:
            server.kill()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
