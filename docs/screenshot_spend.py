"""Regenerates ``docs/img/llm_spend.png``: the spend asset's page in the Dagster UI.

Materializes three days of the example pipeline against the simulator (two with
``sim-small``, one with ``sim-large``; one day twice, so the ledger answers it), then
``llm_spend``, serves the result with ``dagster-webserver`` and photographs the spend asset's
latest materialization at 1440 px with Playwright driving Debian's Chromium (``apt-get install
chromium``; no browser download). Everything lives in a temporary directory.

Usage, from the repository root::

    .venv/bin/python docs/screenshot_spend.py [--chromium /usr/bin/chromium] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFS = """
import dagster as dg
from llm_assets.versions import resolve_model_versions
from reviews_example.definitions import local_resources
from reviews_example.pipeline import ASSETS
from reviews_example.spend import ALERT_SENSORS, SPEND_ASSETS

defs = resolve_model_versions(
    dg.Definitions(
        assets=[*ASSETS, *SPEND_ASSETS], sensors=ALERT_SENSORS, resources=local_resources()
    )
)
"""

MATERIALIZE = """
import os

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as END,
    ASSET_PARTITION_RANGE_START_TAG as START,
)

from reviews_example.definitions import local_resources
from reviews_example.pipeline import ASSETS
from reviews_example.spend import SPEND_ASSETS

instance = dg.DagsterInstance.get()
small = local_resources()
os.environ["LLM_ASSETS_MODEL"] = "sim-large"
large = local_resources()
for resources, tags in (
    (small, {START: "2026-11-01", END: "2026-11-02"}),
    (small, {"dagster/partition": "2026-11-02"}),
    (large, {"dagster/partition": "2026-11-03"}),
):
    assert dg.materialize(ASSETS, resources=resources, instance=instance, tags=tags).success
assert dg.materialize(SPEND_ASSETS, resources=small, instance=instance).success
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers (the simulator wants an API key for /v1/models)
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


def _materialization_pane(page: Any) -> dict[str, float]:
    """The part of the page showing the asset's latest materialization."""
    run_line = page.get_by_text("Materialized in run").first.bounding_box()
    metadata = page.get_by_text("Metadata", exact=True).first.bounding_box()
    last_row = page.get_by_text("uri", exact=True).first.bounding_box()
    left = metadata["x"] - 16
    top = run_line["y"] - 44  # the materialization's date heading
    return {
        "x": left,
        "y": top,
        "width": page.viewport_size["width"] - left,
        "height": last_row["y"] + 40 - top,
    }


def main() -> None:
    """Builds the data, serves it and takes the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", default=str(Path(__file__).parent / "img" / "llm_spend.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        (root / "defs.py").write_text(DEFS)
        sim_port, ui_port = _free_port(), _free_port()
        env = {
            **os.environ,
            "DAGSTER_HOME": str(root / "home"),
            "LLM_ASSETS_DATA_DIR": str(root / "data"),
            "LLM_ASSETS_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
            "DAGSTER_TELEMETRY_DISABLED": "1",
        }
        # One answer in a hundred truncated: failed rows, so the failure rate is not zero.
        cmd = [python, "-m", "llm_assets.simulator", "--port", str(sim_port)]
        cmd += ["--fault-length", "0.01", "--fault-draws", "even"]
        simulator = subprocess.Popen(cmd, env=env)
        webserver = None
        try:
            _wait_for(f"http://127.0.0.1:{sim_port}/v1/models")
            subprocess.run([python, "-c", MATERIALIZE], env=env, cwd=root, check=True)
            webserver = subprocess.Popen(
                [python, "-m", "dagster_webserver", "-f", "defs.py", "-h", "127.0.0.1",
                 "-p", str(ui_port)],
                env=env,
                cwd=root,
            )  # fmt: skip
            _wait_for(f"http://127.0.0.1:{ui_port}/server_info")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium)
                page = browser.new_page(viewport={"width": 1440, "height": 1700})
                page.goto(f"http://127.0.0.1:{ui_port}/assets/llm_spend?view=events")
                page.get_by_text("spend_table").first.wait_for(timeout=120_000)
                page.wait_for_timeout(3000)
                skip = page.get_by_role("button", name="Skip")  # the first-visit welcome dialog
                if skip.count():
                    skip.first.click()
                    page.wait_for_timeout(1500)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out, clip=_materialization_pane(page))
                browser.close()
        finally:
            for process in (webserver, simulator):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    print(f"wrote {args.out}")  # noqa: T201 (a command-line tool)


if __name__ == "__main__":
    main()
