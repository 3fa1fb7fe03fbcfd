"""Shared fixtures: the simulator, Dagster instances on SQLite and Postgres, and a network guard.

``make test`` runs the suite in parallel processes (``pytest -n N --dist loadgroup``).
``XDIST_GROUPS`` below says which tests share something and so run one after another in one
process; the slow tests start first. No test stops a service another test uses (the PostgreSQL
restart test restarts a server of its own), so none has to run alone.

The guard has two layers. ``LLM_ASSETS_OFFLINE=1`` (inherited by every subprocess the tests
start) makes ``LLMResource`` refuse a non-loopback endpoint before sending anything. Inside
the test process, any socket connection to a non-loopback address is refused and the test
that tried it fails loudly, even when the library under test swallowed the error.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

os.environ["LLM_ASSETS_OFFLINE"] = "1"
os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")

from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.simulator import SimulatorConfig, SimulatorServer

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
TEST_API_KEY = "sk-test-DO-NOT-LEAK-4f9c2a7e1b"

_blocked_connections: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple):  # a unix socket path
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        _blocked_connections.append(repr(address))
        raise ConnectionRefusedError(f"tests may not connect to non-loopback {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_local(address):
        _blocked_connections.append(repr(address))
        raise ConnectionRefusedError(f"tests may not connect to non-loopback {address!r}")
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


#: Tests that share more than each test creates for itself run in one process, one after another,
#: keyed by the path of their file under ``tests/`` (a folder ends with ``/``).
XDIST_GROUPS = {
    # dagster-celery workers, a daemon and Celery pings on a busy machine: one cluster at a time.
    "test_celery.py": "celery",
    "test_celery_worker_loss.py": "celery",
    # One `dagster dev`, one Chromium and one instance for the package (package-scoped fixtures).
    "browser/": "browser",
    # Module-scoped fixtures too costly to build once per process: five `dg` commands; a
    # materialized project.
    "test_component_dg.py": "dg_project",
    "test_trace_cli.py": "trace_project",
    "test_demo.py": "demo",
}


def xdist_group_of(nodeid: str) -> str | None:
    """The group of ``XDIST_GROUPS`` the test ``nodeid`` belongs to, if any."""
    path = nodeid.split("::", 1)[0].removeprefix("tests/")
    for prefix, group in XDIST_GROUPS.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return group
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the groups of ``XDIST_GROUPS``, told apart by node id.

    pytest-xdist 3.8 marks a group by renaming the test's node id, which pytest 9.2 no longer
    lets it do (pytest-xdist issue #1386): its ``xdist_group`` marks are silently ignored.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedStateScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid) or super()._split_scope(nodeid)

    return SharedStateScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Starts slow tests first, so that no long test is left running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def no_remote_llm_calls() -> Iterator[None]:
    """Fails the test if anything tried to reach a non-loopback address."""
    _blocked_connections.clear()
    yield
    if _blocked_connections:
        blocked = ", ".join(_blocked_connections)
        _blocked_connections.clear()
        pytest.fail(f"a test tried to reach a non-loopback host: {blocked}")


@pytest.fixture(scope="session")
def _simulator_server() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture
def simulator(_simulator_server: SimulatorServer) -> SimulatorServer:
    """The in-process simulator, with default knobs and zeroed counters."""
    _simulator_server.configure(**SimulatorConfig().model_dump())
    _simulator_server.reset()
    return _simulator_server


#: The test instances keep no compute logs (stdout and stderr of each step): no test reads them,
#: and capturing them starts a ``tail -F`` and a watcher process for each stream of each step.
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@pytest.fixture(scope="session")
def _empty_sqlite_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The storage of an empty SQLite instance, created once per process.

    Dagster builds a new SQLite storage by running its schema migrations (about 0.2 s of CPU);
    a copy of one it built opens in a tenth of that.
    """
    home = tmp_path_factory.mktemp("empty_dagster_home")
    with dg.instance_for_test(temp_dir=str(home), overrides=NO_COMPUTE_LOGS):
        pass
    return home


@pytest.fixture
def sqlite_instance(tmp_path: Path, _empty_sqlite_home: Path) -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance on SQLite in ``tmp_path``, empty."""
    home = tmp_path / "dagster_home"
    shutil.copytree(_empty_sqlite_home, home)
    with dg.instance_for_test(temp_dir=str(home), overrides=NO_COMPUTE_LOGS) as instance:
        yield instance


def make_resources(
    simulator: SimulatorServer, tmp_path: Path, **llm_overrides: Any
) -> dict[str, Any]:
    """Resources for the example pipeline against the simulator, storing under ``tmp_path``."""
    llm_kwargs: dict[str, Any] = {
        "base_url": simulator.base_url,
        "api_key": TEST_API_KEY,
        "model": "sim-small",
        "max_concurrency": 16,
        "retry_backoff_s": 0.01,
        "retry_backoff_max_s": 0.1,
    }
    llm_kwargs.update(llm_overrides)
    return {
        "llm": LLMResource(**llm_kwargs),
        "ledger": ResponseLedger(backend="sqlite", sqlite_path=str(tmp_path / "ledger.sqlite")),
        "io_manager": ParquetIOManager(base_dir=str(tmp_path / "data")),
    }


def location_file(
    simulator: SimulatorServer, tmp_path: Path, imports: str, assets: str, llm_extra: str = ""
) -> Path:
    """A code location file (``-f``) over ``make_resources``'s storage, for CLI tests.

    Args:
        simulator: The simulator its ``LLMResource`` talks to.
        tmp_path: Where its ledger and data live (as ``make_resources`` puts them).
        imports: Import lines of the assets.
        assets: The ``assets=`` expression.
        llm_extra: More ``LLMResource`` keyword arguments, e.g. ``"rpm_limit=600"``.
    """
    extra = f", {llm_extra}" if llm_extra else ""
    path = tmp_path / "location.py"
    path.write_text(
        "import dagster as dg\n"
        "from llm_assets import LLMResource, ParquetIOManager, ResponseLedger, llm_asset\n"
        f"{imports}\n\n"
        f"defs = dg.Definitions(\n"
        f"    assets={assets},\n"
        "    resources={\n"
        f"        'llm': LLMResource(base_url={simulator.base_url!r}, api_key={TEST_API_KEY!r}, "
        f"model='sim-small'{extra}),\n"
        f"        'ledger': ResponseLedger(sqlite_path={str(tmp_path / 'ledger.sqlite')!r}),\n"
        f"        'io_manager': ParquetIOManager(base_dir={str(tmp_path / 'data')!r}),\n"
        "    },\n"
        ")\n"
    )
    return path


@pytest.fixture
def resources(simulator: SimulatorServer, tmp_path: Path) -> dict[str, Any]:
    """Example-pipeline resources bound to the simulator and ``tmp_path``."""
    return make_resources(simulator, tmp_path)


@contextmanager
def fresh_postgres_database(prefix: str = "llm_assets_test") -> Iterator[str]:
    """Creates an empty database on the local server and drops it afterwards.

    Skips the calling test with the reason when no server answers on 127.0.0.1:5432.
    """
    import psycopg2

    try:
        admin = psycopg2.connect(PG_ADMIN_DSN)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 ({exc}); start it to run this test")
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the local Postgres server, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """Like ``postgres_url``, shared by the tests of one module."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_instance(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance built from the repository's production ``dagster.yaml``."""
    home = tmp_path / "pg_dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_url)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()
