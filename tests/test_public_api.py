"""The packages export exactly their public names (httpx's test_exported_members pattern)."""

from __future__ import annotations

import types

import pytest

import llm_assets
import llm_assets.components
import llm_assets.planner
import llm_assets.resources
import llm_assets.simulator


@pytest.mark.parametrize(
    "package",
    [
        llm_assets,
        llm_assets.components,
        llm_assets.planner,
        llm_assets.resources,
        llm_assets.simulator,
    ],
)
def test_all_is_exactly_the_public_names(package: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    assert set(package.__all__) == public
    assert list(package.__all__) == sorted(package.__all__)
