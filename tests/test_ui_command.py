"""``python -m llm_assets ui`` stops every process it started, and so does its ``Supervisor``.

It serves the code location it is given (``make ui``: the example's ``workspace.yaml``).

The process tree is read from ``/proc`` (no psutil): a process belongs to the tree when its
parent chain leads to the command, or when it shares a process group with a member. A
process counts as alive until it is gone or a zombie (this machine's init may never reap
orphans), and a pid is matched with its start time so a reused pid is not mistaken for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from llm_assets.__main__ import main
from tests.conftest import REPO_ROOT
from tests.webserver_support import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot)


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """State, parent pid, process group and start time of ``pid``, or ``None`` if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _all_stats() -> dict[int, tuple[str, int, int, int]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def _tree(root: int) -> set[Proc]:
    """``root``, its live descendants and every live member of their process groups."""
    stats = _all_stats()
    members = {root}
    while True:
        groups = {stats[pid][2] for pid in members if pid in stats and pid != root}
        groups.discard(stats[root][2] if root in stats else -1)  # the caller's own group
        grown = members | {
            pid
            for pid, (_state, ppid, pgrp, _start) in stats.items()
            if ppid in members or pgrp in groups
        }
        if grown == members:
            break
        members = grown
    return {(pid, stats[pid][3]) for pid in members if pid in stats and stats[pid][0] != "Z"}


def _alive(procs: set[Proc]) -> set[Proc]:
    alive = set()
    for pid, start in procs:
        stat = _stat(pid)
        if stat is not None and stat[3] == start and stat[0] not in ("Z", "X"):
            alive.add((pid, start))
    return alive


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_until_gone(procs: set[Proc], timeout_s: float) -> set[Proc]:
    deadline = time.monotonic() + timeout_s
    while (left := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def _kill_leftovers(procs: set[Proc]) -> None:
    """Never leak what a failing test started."""
    for pid, _start in _alive(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2):
            return True
    except OSError:
        return False


LOCATION_STATUS = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"


def _location_loaded(port: int) -> bool:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": LOCATION_STATUS}).encode(),
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            entries = json.loads(response.read())["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


def test_ui_serves_the_code_location_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llm_assets.resources.errors import UserError
    from llm_assets.ui import code_location

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no code location given"):
        code_location()
    assert code_location(module_name="my_project.definitions") == ["-m", "my_project.definitions"]
    with pytest.raises(UserError, match=r"defs\.py does not exist"):
        code_location(python_file="defs.py")
    (tmp_path / "pyproject.toml").write_text('[tool.dagster]\nmodule_name = "my_project.defs"\n')
    assert code_location() == []  # dagster dev reads [tool.dagster] itself
    (tmp_path / "workspace.yaml").write_text("load_from: []\n")
    assert code_location() == ["-w", "workspace.yaml"]
    with pytest.raises(UserError, match="give one code location"):
        code_location(workspace="workspace.yaml", module_name="my_project.definitions")


def test_the_library_command_says_where_the_demo_is(capsys: pytest.CaptureFixture[str]) -> None:
    # In this process: the command answers before it loads anything.
    status = main(["demo", "--partition", "2026-11-01"])
    shown = capsys.readouterr()
    assert status == 2 and "make demo" in shown.err and "Traceback" not in shown.err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_to_ui_stops_every_process_it_started(tmp_path: Path) -> None:
    port, simulator_port, review_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.pop("LLM_ASSETS_REVIEW_URL", None)
    env.pop("LLM_ASSETS_REVIEW_TOKEN", None)  # the page is read-only without one
    env.update(
        DAGSTER_HOME=str(tmp_path / "home"),
        LLM_ASSETS_DATA_DIR=str(tmp_path / "data"),
        LLM_ASSETS_LEDGER_PATH=str(tmp_path / "ledger.sqlite"),
        DAGSTER_TELEMETRY_DISABLED="1",
    )
    log_path = tmp_path / "ui.log"
    tree: set[Proc] = set()
    with log_path.open("w") as log:
        command = ["ui", "--port", str(port), "--simulator-port", str(simulator_port)]
        command += ["--review-port", str(review_port)]
        command += ["-w", "workspace.yaml"]  # as make ui runs it: the example's code location
        ui = subprocess.Popen(
            [sys.executable, "-m", "llm_assets", *command],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            started = time.monotonic()
            expected = (
                "llm_assets.simulator", "dagster_webserver", "dagster._daemon", " grpc ",
                "llm_assets review serve",
            )  # fmt: skip
            commands: list[str] = []
            while time.monotonic() - started < 150:
                assert ui.poll() is None, log_path.read_text()[-5000:]
                tree |= _tree(ui.pid)
                commands = [_cmdline(pid) for pid, _start in _alive(tree)]
                ready = (
                    _answers(f"http://127.0.0.1:{port}/server_info")
                    and _location_loaded(port)
                    and _answers(f"http://127.0.0.1:{review_port}/")
                )
                if ready and all(any(n in c for c in commands) for n in expected):
                    break
                time.sleep(1)
            else:
                pytest.fail(f"ui not ready: {commands}\n" + log_path.read_text()[-5000:])
            assert _answers(f"http://127.0.0.1:{simulator_port}/_simulator/stats")
            # The review page serves the example's gate, read-only without a token.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{review_port}/", timeout=30) as response:
                assert "review_insights" in response.read().decode()
            ready_s = time.monotonic() - started

            stopping = time.monotonic()
            ui.send_signal(signal.SIGTERM)
            left = _wait_until_gone(tree, timeout_s=60)
            stop_s = time.monotonic() - stopping
            assert not left, [(_cmdline(pid), pid) for pid, _ in left]
            assert ui.wait(timeout=10) == 0
            print(f"ui ready in {ready_s:.1f}s; {len(tree)} processes stopped in {stop_s:.1f}s")
        finally:
            if ui.poll() is None:
                ui.kill()
                ui.wait()
            _kill_leftovers(tree)
    text = log_path.read_text()
    assert "SIGTERM received; stopping every process it started" in text
    assert f"review page on http://127.0.0.1:{review_port} (read-only" in text
    assert "Traceback" not in text.split("SIGTERM received")[-1]


SUPERVISED = textwrap.dedent(
    """
    import signal, sys
    from llm_assets.supervisor import Child, Supervisor

    py = sys.executable
    sleep = "import time; time.sleep(600)"
    spawner = f"import subprocess; subprocess.Popen([{py!r}, '-c', {sleep!r}]); {sleep}"
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); print('stubborn ready', flush=True); "
        "time.sleep(600)"
    )
    with Supervisor(grace_s=1.0, terminate_s=1.0) as supervisor:
        supervisor.start(Child("spawner", [py, "-c", spawner]))
        supervisor.start(Child("stubborn", [py, "-c", stubborn], stop_signal=signal.SIGINT))
        print("started", *(c.process.pid for c in supervisor.children), flush=True)
        sys.exit(supervisor.wait())
    """
)


def _supervise() -> tuple[subprocess.Popen[str], list[int], set[Proc]]:
    """Starts the script above; returns it, its children's pids and its full tree."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISED],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    if not any(line.startswith("started") for line in lines):  # it ended before starting both
        proc.kill()
        _, stderr = proc.communicate(timeout=30)
        pytest.fail(f"the supervisor did not start its children: {lines}\n{stderr[-3000:]}")
    (started,) = [line for line in lines if line.startswith("started")]
    assert any(line.startswith("stubborn ready") for line in lines), lines
    children = [int(pid) for pid in started.split()[1:]]
    deadline = time.monotonic() + 30
    while len(tree := _tree(proc.pid)) < 4 and time.monotonic() < deadline:  # + grandchild
        time.sleep(0.1)
    assert len(tree) == 4, tree
    return proc, children, tree


@pytest.mark.timeout(120)
def test_supervisor_escalates_to_sigkill_and_stops_grandchildren() -> None:
    proc, _children, tree = _supervise()
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not _wait_until_gone(tree, timeout_s=10)
    finally:
        _kill_leftovers(tree)


@pytest.mark.timeout(120)
def test_supervisor_stops_the_rest_when_a_child_dies() -> None:
    proc, (spawner, _stubborn), tree = _supervise()
    try:
        os.kill(spawner, signal.SIGKILL)  # its own child lives on in its process group
        assert proc.wait(timeout=30) == 1
        assert not _wait_until_gone(tree, timeout_s=10)
        assert proc.stderr is not None
        assert "spawner was killed by SIGKILL; stopping the other processes" in proc.stderr.read()
    finally:
        _kill_leftovers(tree)


@pytest.mark.timeout(60)
def test_a_helper_child_that_exits_stops_nothing() -> None:
    from llm_assets.supervisor import Child, Supervisor

    supervisor = Supervisor(grace_s=1.0, terminate_s=1.0)
    try:
        sleeper = supervisor.start(Child("sleeper", ["sleep", "60"]))
        helper = supervisor.start(Child("helper", ["true"], essential=False))
        assert helper.wait(timeout=30) == 0
        assert supervisor.exited() is None and sleeper.poll() is None
    finally:
        supervisor.stop()
    assert sleeper.poll() is not None
