"""Every package exports exactly its public names (httpx's test_exported_members pattern).

The packages are found, not listed, so a new package is held to it at once. A package's
``__all__`` is what may be relied on; its inner modules may change freely.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import llm_assets
import llm_assets.resources
import llm_assets.sensors


def _packages() -> list[str]:
    names = {"llm_assets", "llm_assets.resources", "llm_assets.sensors"}
    for root in (llm_assets, llm_assets.resources, llm_assets.sensors):
        prefix = root.__name__ + "."
        names |= {m.name for m in pkgutil.walk_packages(root.__path__, prefix) if m.ispkg}
    return sorted(names)


def test_every_package_is_found() -> None:
    expected = {
        "llm_assets.components", "llm_assets.planner", "llm_assets.resources.ledger",
        "llm_assets.resources.llm", "llm_assets.sensors", "llm_assets.simulator",
    }  # fmt: skip
    assert expected <= set(_packages())


@pytest.mark.parametrize("name", _packages())
def test_all_is_exactly_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    assert hasattr(package, "__all__"), f"{name} has no __all__"
    public = {
        key
        for key, value in vars(package).items()
        if not key.startswith("_")
        and not isinstance(value, types.ModuleType)
        and key != "annotations"
    }
    assert set(package.__all__) == public  # its order is ruff's (RUF022)
