"""Griffe extension: load ``llm_assets.resources`` and ``llm_assets.sensors`` from their folders.

The repository's ``resources/`` and ``sensors/`` folders install as subpackages of
``llm_assets`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so they are not under
``llm_assets/`` on disk and griffe, which reads source files, does not find them. Once griffe
has loaded ``llm_assets``, this extension loads each such subpackage from the folder the
installed package maps it to and attaches it where the import system puts it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import griffe


def mapped_subpackages(package: str) -> dict[str, Path]:
    """Subpackages of ``package`` whose folder is not inside the package's own folder.

    Args:
        package: An installed package, e.g. ``"llm_assets"``.

    Returns:
        Subpackage name (``"sensors"``) to its folder, as the installed package maps it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return {}
    home = Path(next(iter(spec.submodule_search_locations))).resolve()
    found: dict[str, Path] = {}
    for name in ("resources", "sensors"):
        sub = importlib.util.find_spec(f"{package}.{name}")
        if sub is None or not sub.submodule_search_locations:
            continue
        folder = Path(next(iter(sub.submodule_search_locations))).resolve()
        if folder.parent != home:
            found[name] = folder
    return found


class MappedSubpackages(griffe.Extension):
    """Attach the package-dir mapped subpackages of ``llm_assets`` once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Load each mapped folder as a package and move it under ``pkg``."""
        if pkg.name != "llm_assets":
            return
        for name, folder in mapped_subpackages(pkg.name).items():
            if name in pkg.members:
                continue
            module = loader.load(folder)
            assert isinstance(module, griffe.Module)
            loader.modules_collection.del_member(module.name)
            module.parent = pkg
            pkg.set_member(name, module)
