"""bespokelabs-curator beside our engine, if it can be installed in a throwaway venv.

Curator is not a dependency of this project: it is installed on first use into its own venv
(``$LLM_ASSETS_CURATOR_VENV``, default ``<tmp>/llm_assets_curator_venv``) so that its pins
cannot disturb ours, and it runs as a subprocess (``bench/curator_driver.py``). Curator assumes
per-minute limits, so it is told the simulator's limit scaled to a minute; that is, unlike our
engine, it is given the limit. Its throughput is read from the simulator's completion counter,
sampled while it runs, over the same steady-state windows as the other clients, counted from
its first completion so that its start-up (imports, dataset set-up) is not held against it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from llm_assets.simulator import SimulatorProcess

DRIVER = Path(__file__).with_name("curator_driver.py")
INSTALL_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 150.0


def curator_venv() -> Path:
    default = Path(tempfile.gettempdir()) / "llm_assets_curator_venv"
    return Path(os.environ.get("LLM_ASSETS_CURATOR_VENV") or default)


class CuratorInstall:
    """Installs curator in the background so that the other benchmarks run meanwhile."""

    def __init__(self) -> None:
        self.python = curator_venv() / "bin" / "python"
        self.reason = ""
        self._thread = threading.Thread(target=self._install, daemon=True)
        self._thread.start()

    def _importable(self) -> bool:
        if not self.python.exists():
            return False
        check = [str(self.python), "-c", "import bespokelabs.curator"]
        return subprocess.run(check, capture_output=True, timeout=120).returncode == 0

    def _install(self) -> None:
        try:
            if self._importable():
                return
            venv = curator_venv()
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            pip = [str(self.python), "-m", "pip", "install", "--quiet", "bespokelabs-curator"]
            done = subprocess.run(pip, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            if done.returncode != 0 or not self._importable():
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                self.reason = f"pip install bespokelabs-curator failed: {tail[0][:160]}"
        except (OSError, subprocess.SubprocessError) as exc:
            self.reason = f"could not install bespokelabs-curator: {type(exc).__name__}: {exc}"

    def wait(self) -> str:
        """Blocks until the install is over; returns why curator is unusable, or ''."""
        self._thread.join()
        return self.reason


def _count_at(samples: list[tuple[float, int]], when: float) -> float:
    """The simulator's completion counter at ``when``, interpolated between samples."""
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= when <= t1:
            return c0 + (c1 - c0) * (when - t0) / max(t1 - t0, 1e-9)
    return float(samples[-1][1])


def run_curator(
    install: CuratorInstall,
    sim: SimulatorProcess,
    *,
    rpm: int,
    tpm: int,
    window_s: float,
    windows: int,
    max_tokens: int,
) -> dict[str, float | str]:
    """Curator's steady-state throughput and 429 rate, or ``n/a`` with a printed reason."""
    reason = install.wait()
    if not reason:
        reason, figures = _measure(install.python, sim, rpm, tpm, window_s, windows, max_tokens)
        if not reason:
            return figures
    print(f"# curator_fraction_of_limit is n/a: {reason}", flush=True)
    return {"curator_fraction_of_limit": "n/a"}


def _measure(
    python: Path,
    sim: SimulatorProcess,
    rpm: int,
    tpm: int,
    window_s: float,
    windows: int,
    max_tokens: int,
) -> tuple[str, dict[str, float | str]]:
    per_minute = 60.0 / window_s
    args = {
        "base_url": sim.base_url,
        "api_key": "sk-bench-curator",
        "rpm_per_minute": int(rpm * per_minute),
        "tpm_per_minute": int(tpm * per_minute),
        "max_tokens": max_tokens,
        # Enough for its ramp-up plus `windows` windows at the limit.
        "count": int(rpm * (windows + 1.5)),
    }
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "CURATOR_CACHE_DIR": scratch, "PYTHONPATH": ""}
        log_path = Path(scratch) / "curator.log"
        out_path = Path(scratch) / "curator.out"
        # Curator's progress output is large: it goes to files, never to an unread pipe.
        with log_path.open("w") as log, out_path.open("w") as out:
            process = subprocess.Popen(
                [str(python), str(DRIVER), json.dumps(args)],
                stdout=out,
                stderr=log,
                cwd=scratch,
                env=env,
            )
            samples: list[tuple[float, int]] = []
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                samples.append((time.monotonic(), sim.stats()["chat_completions"]))
                time.sleep(0.25)
            if process.poll() is None:
                process.kill()
                process.wait()
                return f"curator did not finish within {RUN_TIMEOUT_S:.0f} s", {}
        if process.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            return f"curator exited {process.returncode}: {tail[0][:160]}", {}
    samples.append((time.monotonic(), sim.stats()["chat_completions"]))
    first = next((t for t, count in samples if count > 0), None)
    if first is None:
        return "curator completed no request", {}
    low, high = first + window_s, first + (windows - 1) * window_s
    if samples[-1][0] < high:
        return "curator finished before the steady-state windows ended", {}
    per_window = (_count_at(samples, high) - _count_at(samples, low)) / (windows - 2)
    counts = sim.stats()["status_counts"]
    answered = sum(counts.values())
    return "", {
        "curator_fraction_of_limit": per_window / rpm,
        "curator_429_rate": counts.get("429", 0) / answered if answered else 0.0,
    }
