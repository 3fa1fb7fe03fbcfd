"""The documentation runs: every Python block of the docs and the README, and the site build.

Each page's ```python blocks run in order in one namespace, in a process of their own, with
``LLM_ASSETS_OFFLINE=1`` and a fresh ``DAGSTER_HOME`` and working directory, so a block that
stops working fails here by page and line. A block that cannot run here (it needs a running
Dagster instance, say) is preceded by ``<!-- not-run: why -->``; keep those few.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.forked import PRELOAD

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_FENCE = re.compile(r"^(`{3,})(\S*)(.*)$")
_NOT_RUN = re.compile(r"^<!-- not-run: (.*\S) -->$")

# Each page runs in a process forked from a server that has imported the libraries once (the
# test process's one server, with tests/forked.py's list; no library reads its environment on
# import, and the page's own modules are imported after its environment is set).
_PAGES = multiprocessing.get_context("forkserver")


def _run_page(blocks: list[dict[str, Any]], cwd: str, env: dict[str, str], answer: Any) -> None:
    """In the child: the page's blocks in one namespace, in ``cwd`` with ``env``.

    Sends ``None`` through ``answer``, or the traceback of the block that failed.
    """
    log = os.open(os.path.join(cwd, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path.insert(0, str(ROOT))
    namespace = {"__name__": "__docs__"}
    try:
        for block in blocks:
            where = f"{block['page']}:{block['line']}"
            # dont_inherit: not this module's `from __future__ import annotations`
            exec(compile(block["code"], where, "exec", dont_inherit=True), namespace)
    except BaseException:
        answer.send(traceback.format_exc())
    else:
        answer.send(None)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # of the first line of code, 1-based
    language: str
    code: str
    not_run: str | None  # the reason, when marked not-run


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with its language and not-run reason."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index].strip())
        if not match:
            index += 1
            continue
        fence, language = match.group(1), match.group(2)
        indent = len(lines[index]) - len(lines[index].lstrip())
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        before = (lines[i].strip() for i in range(index - 1, -1, -1))
        previous = next((line for line in before if line), "")
        reason = _NOT_RUN.match(previous)
        code = "\n".join(line[indent:] for line in lines[start:end])
        found.append(
            Block(
                page=str(path.relative_to(ROOT)),
                line=start + 1,
                language=language,
                code=code,
                not_run=reason.group(1) if reason else None,
            )
        )
        index = end + 1
    return found


def python_blocks(path: Path) -> list[Block]:
    """The page's Python blocks."""
    return [block for block in blocks_of(path) if block.language == "python"]


def _pages_with_python() -> list[Path]:
    return [page for page in PAGES if python_blocks(page)]


def test_pages_are_found() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 10, PAGES


@pytest.mark.timeout(10)
def test_not_run_blocks_are_few_and_say_why() -> None:
    marked = [b for page in PAGES for b in python_blocks(page) if b.not_run is not None]
    runnable = [b for page in PAGES for b in python_blocks(page) if b.not_run is None]
    assert len(marked) <= 3, [f"{b.page}:{b.line}: {b.not_run}" for b in marked]
    assert len(runnable) >= 10 * max(1, len(marked))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda page: str(page.relative_to(ROOT)))
def test_python_blocks_run(page: Path, tmp_path: Path) -> None:
    blocks = [
        {"page": block.page, "line": block.line, "code": block.code}
        for block in python_blocks(page)
        if block.not_run is None
    ]
    if not blocks:
        pytest.skip(f"every Python block of {page.name} is marked not-run")
    env = {**os.environ, "LLM_ASSETS_OFFLINE": "1", "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir()
    _PAGES.set_forkserver_preload(PRELOAD)
    receive, answer = _PAGES.Pipe(duplex=False)
    child = _PAGES.Process(target=_run_page, args=(blocks, str(tmp_path), env, answer))
    child.start()
    answer.close()
    try:
        failure = receive.recv() if receive.poll(280) else "the page ran for over 280 s"
    except EOFError:
        failure = "the page's process ended without an answer"
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
    log = (tmp_path / "output.log").read_text(errors="replace")[-2000:]
    assert failure is None, (
        f"a Python block of {page.relative_to(ROOT)} failed (exit code {child.exitcode}):\n"
        f"{failure}\n{log}"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_site_builds_strict(tmp_path: Path) -> None:
    missing = [
        name
        for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
        if importlib.util.find_spec(name.split(".")[0]) is None
        or importlib.util.find_spec(name) is None
    ]
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): make install")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists()
