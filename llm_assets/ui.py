"""``python -m llm_assets ui``: the Dagster UI and daemon beside the simulator, stopped as one.

``ui`` serves a code location (``-w workspace.yaml``, ``-m module``, ``-f file.py``; by default
``./workspace.yaml``, else the ``[tool.dagster]`` block of ``./pyproject.toml``, as ``dagster
dev`` finds them) on the instance in ``$DAGSTER_HOME`` (default ``./.dagster_home``, created
with a minimal ``dagster.yaml`` when missing). The simulator's URL is exported to the code as
``LLM_ASSETS_BASE_URL``, and the review page's as ``LLM_ASSETS_REVIEW_URL`` (the link each
gate partition shows). It starts three children, each in a process group of its own
(``llm_assets.supervisor``):

- the simulator (``python -m llm_assets.simulator``);
- ``dagster dev``: the webserver, the daemon, the code server and any run workers;
- the review page (``python -m llm_assets review serve`` on the same code location): it decides
  when ``LLM_ASSETS_REVIEW_TOKEN`` is set and is read-only otherwise. A location it cannot
  serve leaves the rest running.

SIGINT, SIGTERM or SIGHUP to ``ui`` stops the whole tree; if the simulator or ``dagster dev``
exits on its own, the others are stopped and ``ui`` exits with status 1. Since the children
are not in the terminal's process group, a Ctrl-C reaches ``ui`` alone, and ``ui`` decides the
order of the shutdown.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llm_assets.resources.errors import UserError
from llm_assets.review.gate import REVIEW_URL_ENV
from llm_assets.simulator import SimulatorConfig
from llm_assets.supervisor import POLL_S, Child, Supervisor, say

MINIMAL_INSTANCE_YAML = "telemetry:\n  enabled: false\n"
# Loopback readiness checks must never go through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
    port: int,
    simulator_port: int,
    env: dict[str, str],
    location: Sequence[str] = (),
    review_port: int = 3100,
) -> list[Child]:
    """The simulator, ``dagster dev`` and the review page on 127.0.0.1, as ``ui`` runs them.

    Args:
        port: Port of the Dagster UI.
        simulator_port: Port of the simulator.
        env: The children's environment.
        location: ``dagster dev``'s code location arguments (see ``code_location``).
        review_port: Port of the review page.

    Returns:
        The simulator, ``dagster dev``, then the review page (not essential: ``ui`` goes on
        without it).

    Examples:
        >>> [c.name for c in ui_children(3000, 8765, {}, ["-w", "workspace.yaml"])]
        ['the simulator', 'dagster dev', 'the review page']
    """
    config = SimulatorConfig(latency_ms=20.0, latency_jitter=0.3)
    simulator = [sys.executable, "-m", "llm_assets.simulator", "--host", "127.0.0.1"]
    dev = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), *location]
    review = [sys.executable, "-m", "llm_assets", "review", "serve", "--host", "127.0.0.1"]
    return [
        Child(
            "the simulator",
            [*simulator, "--port", str(simulator_port), "--config-json", "-"],
            env=env,
            stdin=config.model_dump_json().encode(),
        ),
        Child("dagster dev", dev, stop_signal=signal.SIGINT, env=env),
        Child(
            "the review page",
            [*review, "--port", str(review_port), *location],
            env=env,
            essential=False,
        ),
    ]


def run_ui(
    port: int = 3000,
    simulator_port: int = 8765,
    location: Sequence[str] | None = None,
    review_port: int = 3100,
) -> int:
    """Runs the Dagster UI, the daemon, the simulator and the review page until a stop signal.

    Args:
        port: Port of the Dagster UI on 127.0.0.1.
        simulator_port: Port of the simulator; 0 or a busy port picks a free one.
        location: ``dagster dev``'s code location arguments; ``None`` finds them as
            ``code_location()`` does.
        review_port: Port of the review page; 0 or a busy port picks a free one.

    Returns:
        0 after Ctrl-C, SIGTERM or SIGHUP; 1 when a process died on its own.

    Raises:
        UserError: ``port`` is already in use, or no code location is found.

    Examples:
        .. code-block:: python

            from llm_assets.ui import code_location, run_ui

            # open http://127.0.0.1:3000 (review page: :3100); Ctrl-C stops everything
            run_ui(port=3000, location=code_location(module_name="my_project.definitions"))
    """
    location = code_location() if location is None else list(location)
    if not _port_free(port):
        raise UserError(f"port {port} is already in use on 127.0.0.1: pass --port <free port>")
    simulator_port = _free_or_any(simulator_port, "the simulator")
    review_port = _free_or_any(review_port, "the review page")
    home = prepare_local_home()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    env = dict(os.environ, DAGSTER_HOME=str(home), LLM_ASSETS_BASE_URL=f"{simulator_url}/v1")
    # The link each gate partition shows, unless the page is published elsewhere.
    review_url = f"http://127.0.0.1:{review_port}"
    env.setdefault(REVIEW_URL_ENV, review_url)
    ui_url = f"http://127.0.0.1:{port}"
    supervisor = Supervisor()
    with supervisor:
        children = ui_children(port, simulator_port, env, location, review_port)
        return _serve(supervisor, children, simulator_url, ui_url, review_url)


def _free_or_any(port: int, name: str) -> int:
    if port and _port_free(port):
        return port
    if port:
        say(f"port {port} is in use; {name} takes a free one")
    return _any_free_port()


def _serve(
    supervisor: Supervisor,
    children: Sequence[Child],
    simulator_url: str,
    ui: str,
    review_url: str,
) -> int:
    simulator, dev, review = children
    supervisor.start(simulator)
    deadline = time.monotonic() + 20
    while not _answers(f"{simulator_url}/v1/models"):
        if supervisor.stop_requested is not None or supervisor.exited():
            return supervisor.wait()
        if time.monotonic() > deadline:
            say(f"llm-assets ui: the simulator did not answer on {simulator_url}", sys.stderr)
            return 1
        time.sleep(POLL_S)
    say(f"simulator at {simulator_url}; starting the Dagster UI on {ui}")
    supervisor.start(dev)
    supervisor.start(review)
    while supervisor.stop_requested is None and not supervisor.exited():
        if _answers(f"{ui}/server_info"):
            say(f"Dagster UI ready at {ui} (Ctrl-C stops everything)")
            if review.process is not None and review.process.poll() is None:
                say(f"review page at {review_url} (python -m llm_assets review serve)")
            break
        time.sleep(1.0)
    return supervisor.wait()
