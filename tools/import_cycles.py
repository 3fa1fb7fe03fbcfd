"""Fails on any import cycle among the installed modules of ``llm_assets``.

Usage: ``python tools/import_cycles.py`` (exit 1 and one line per cycle, else exit 0).

Every ``import`` and ``from ... import`` counts, at module level or inside a function: an
import deferred into a function still ties the two modules together, it only hides the cycle
until run time. Imports under ``if TYPE_CHECKING:`` do not count (they never run). The
repository's folders are read as they install (``resources/`` is ``llm_assets.resources``,
``sensors/`` is ``llm_assets.sensors``); an edge goes to the deepest module an import names.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Repository folder -> the package it installs as.
LAYOUT = {"llm_assets": "llm_assets", "resources": "llm_assets.resources",
          "sensors": "llm_assets.sensors"}  # fmt: skip


def installed_modules(root: Path = ROOT) -> dict[str, Path]:
    """``module name -> file`` of every module the package installs."""
    modules: dict[str, Path] = {}
    for folder, package in LAYOUT.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, int]]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, node.lineno
        stack.extend(ast.iter_child_nodes(node))


def edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``module -> {imported module: line}`` among ``modules``."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node, line in _imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, name, is_package):
                found = _deepest(target, modules)
                if found and found != name:
                    graph[name].setdefault(found, line)
    return graph


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names]  # a submodule, else the package


def _deepest(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> int:
    """Print each cycle with the imports that close it; 1 if there is any."""
    modules = installed_modules()
    graph = edges(modules)
    found = cycles(graph)
    for component in found:
        members = set(component)
        links = [
            f"{src} -> {dst} ({modules[src].relative_to(ROOT)}:{line})"
            for src in component
            for dst, line in sorted(graph[src].items())
            if dst in members
        ]
        print(f"import cycle among {len(component)} modules:")
        for link in links:
            print(f"  {link}")
    print(f"{len(modules)} modules, {len(found)} import cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
