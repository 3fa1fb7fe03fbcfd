"""Fixtures for the browser tests: one Dagster UI for the package, a Chromium page per test.

The UI and the browser live only while this package's tests run (package scope), so they use
no CPU or memory during the rest of the suite.

A test that fails leaves a screenshot, the page's HTML and the server log in
``$LLM_ASSETS_TEST_ARTIFACTS/<test>/`` (default ``.test-artifacts/`` in the repository); the
failure report names the folder.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_assets.simulator import SimulatorConfig, SimulatorServer
from tests.browser.support import DagsterUI, chromium_or_skip, running_dagster_ui, save_page
from tests.conftest import fresh_postgres_database

#: Partitions whose upstream rows exist before the first page opens: the run launched with the
#: Materialize button, the run that fails its budget, and the day a reviewer decides.
MATERIALIZED_PARTITION = "2026-11-02"
FAILED_PARTITION = "2026-11-03"
REVIEW_PARTITION = "2026-11-04"
# Playwright waits this long for an element or an expectation unless told otherwise: pages of
# a UI on a loaded machine may take tens of seconds to fill in.
DEFAULT_WAIT_MS = 120_000


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium executable; skips every browser test when there is none."""
    return chromium_or_skip()


@pytest.fixture(scope="package")
def dagster_ui(
    _simulator_server: SimulatorServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DagsterUI]:
    """The example code location in ``dagster dev`` on a fresh Postgres database (tests that
    only send GraphQL use it without a browser)."""
    _simulator_server.configure(**SimulatorConfig(latency_ms=20.0).model_dump())
    with (
        fresh_postgres_database("llm_assets_browser") as url,
        running_dagster_ui(
            tmp_path_factory.mktemp("browser"),
            url,
            _simulator_server.base_url,
            [MATERIALIZED_PARTITION, FAILED_PARTITION, REVIEW_PARTITION],
        ) as ui,
    ):
        yield ui


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """Headless Chromium, driven by Playwright (no browser download)."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_WAIT_MS)

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(dagster_ui: DagsterUI, browser: Any) -> Iterator[Any]:
    """A fresh page in its own browser context, at the UI's address."""
    context = browser.new_context(base_url=dagster_ui.url, viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(DEFAULT_WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed browser test, saves the page and appends where it went to the report."""
    report = yield
    fixtures: dict[str, Any] = getattr(item, "funcargs", {})
    page = fixtures.get("page")
    if report.when == "call" and report.failed and page is not None:
        ui = fixtures.get("dagster_ui")
        logs = (
            (ui.log_path, ui.log_path.with_name("review-page.log"))
            if isinstance(ui, DagsterUI)
            else ()
        )
        try:
            folder: Path | str = save_page(page, item.name, logs)
        except Exception as exc:  # the page may have crashed; the report must still say so
            folder = f"not saved ({type(exc).__name__}: {exc})"
        report.sections.append(
            ("browser artifacts", f"screenshot, page HTML and server log: {folder}")
        )
    return report
