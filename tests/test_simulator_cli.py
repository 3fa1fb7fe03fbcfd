"""The simulator explains a taken port in one sentence instead of a traceback."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from llm_assets.simulator import PortInUseError, SimulatorProcess, SimulatorServer
from llm_assets.simulator.__main__ import build_parser, config_from_args

HOST = "127.0.0.1"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port with a live listener on it, as another simulator or `make ui` would hold."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.timeout(120)
def test_cli_on_a_taken_port_prints_one_sentence_and_exits_2(taken_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llm_assets.simulator", "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"port {taken_port} on {HOST} is already in use" in proc.stderr
    assert "`make ui`" in proc.stderr and "--port N" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "listening on" not in proc.stdout


@pytest.mark.timeout(60)
def test_server_on_a_taken_port_raises_port_in_use(taken_port: int) -> None:
    server = SimulatorServer(port=taken_port)
    with pytest.raises(PortInUseError, match=f"port {taken_port} on {HOST} is already in use"):
        server.start()
    assert server.url == ""
    copy = pickle.loads(pickle.dumps(PortInUseError(98, "port 1 is taken")))
    assert isinstance(copy, OSError) and str(copy) == "port 1 is taken"


@pytest.mark.timeout(120)
def test_process_on_a_taken_port_raises_port_in_use(taken_port: int) -> None:
    runner = SimulatorProcess(port=taken_port)
    with pytest.raises(PortInUseError, match=f"port {taken_port} on {HOST} is already in use"):
        runner.start()
    assert runner.url == ""


@pytest.mark.timeout(30)
def test_list_knobs_take_whole_words_from_the_command_line() -> None:
    args = build_parser().parse_args(
        ["--accepted-params", "top_k", "min_p", "--accepted-params", "seed_x",
         "--accepted-models", "my-local-model"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.accepted_params == ["top_k", "min_p", "seed_x"]
    assert config.accepted_models == ["my-local-model"]
