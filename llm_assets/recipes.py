"""What ``llm_asset`` built each asset from, for tools that run its task outside a step.

The forecast and experiments render an asset's rows as its step would: they need its task,
its upstream, ``prepare`` and the resource keys, kept here by the op the factory built
(``Definitions`` copied by ``resolve_model_versions`` keep their op), and the upstream
partitions, read through the upstream's ``ParquetIOManager``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from llm_assets.options import ResolvedOptions
from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.task import LLMTask

__all__ = [
    "CodeLocation",
    "Recipe",
    "assets_def_of",
    "check_partitions",
    "find_recipe",
    "partition_range",
    "recipe_of",
    "recipe_resources",
    "remember_recipe",
    "resources_of",
    "upstream_frames",
]


#: A code location as loaded: its ``Definitions``, or the repository a run's op sees.
CodeLocation = dg.Definitions | dg.RepositoryDefinition


def assets_def_of(location: CodeLocation, key: dg.AssetKey) -> dg.AssetsDefinition:
    """The definition holding ``key``.

    Raises:
        KeyError: No asset has that key.
    """
    if isinstance(location, dg.Definitions):
        try:
            return location.resolve_assets_def(key)
        except Exception:
            raise KeyError(key) from None
    return location.assets_defs_by_key[key]


def resources_of(location: CodeLocation) -> dict[str, Any]:
    """The location's resources by key (as bound, not yet initialized)."""
    if isinstance(location, dg.Definitions):
        return dict(location.resources or {})
    return dict(location.get_top_level_resources())


@dataclass(frozen=True)
class Recipe:
    """What ``llm_asset`` built an asset from: its table key, task, upstream and options."""

    table: dg.AssetKey
    task: LLMTask
    upstream: dg.AssetKey
    options: ResolvedOptions


# By the op the factory built: Definitions copied by resolve_model_versions keep their op.
_RECIPES: dict[int, tuple[weakref.ref[Any], Recipe]] = {}


def remember_recipe(
    definition: dg.AssetsDefinition,
    table: dg.AssetKey,
    task: LLMTask,
    upstream: dg.AssetKey,
    options: ResolvedOptions,
) -> None:
    """Keeps what ``llm_asset`` built ``definition`` from, for forecasts of its partitions."""
    node = definition.node_def
    _RECIPES[id(node)] = (weakref.ref(node), Recipe(table, task, upstream, options))


def recipe_of(definition: dg.AssetsDefinition) -> Recipe | None:
    """What ``llm_asset`` built ``definition`` from, or None for any other asset."""
    entry = _RECIPES.get(id(definition.node_def))
    if entry is None or entry[0]() is not definition.node_def:
        return None
    return entry[1]


def partition_range(defs: CodeLocation, asset: str, text: str) -> list[str]:
    """The partition keys of ``asset`` from ``FIRST...LAST`` (as the dagster CLI writes it).

    Raises:
        UserError: The text is not ``FIRST...LAST`` or names a key the asset lacks.
    """
    first, sep, last = text.partition("...")
    if not sep or not first or not last:
        raise UserError(
            f"--partition-range takes FIRST...LAST, e.g. 2026-11-01...2026-11-07, not {text!r}"
        )
    assets_def, _ = find_recipe(defs, dg.AssetKey.from_user_string(asset), asset)
    if assets_def.partitions_def is None:
        raise UserError(f"asset '{asset}' is not partitioned; leave out --partition-range")
    keys = list(assets_def.partitions_def.get_partition_keys())
    for key in (first, last):
        if key not in keys:
            raise UserError(f"asset '{asset}' has no partition {key}")
    start, end = keys.index(first), keys.index(last)
    if start > end:
        raise UserError(f"--partition-range {text}: {first} comes after {last}")
    return keys[start : end + 1]


def find_recipe(
    defs: CodeLocation, key: dg.AssetKey, asset: str
) -> tuple[dg.AssetsDefinition, Recipe]:
    """The definition of the ``llm_asset`` table ``key`` in ``defs``, and its recipe.

    Raises:
        UserError: No such asset, or it is not an ``llm_asset`` table.
    """
    try:
        assets_def = assets_def_of(defs, key)
    except KeyError:
        raise UserError(f"no asset '{asset}' in this code location") from None
    entry = _RECIPES.get(id(assets_def.node_def))
    if entry is None or entry[0]() is not assets_def.node_def or entry[1].table != key:
        raise UserError(f"asset '{asset}' is not an llm_asset table: only those are forecast")
    return assets_def, entry[1]


def check_partitions(
    assets_def: dg.AssetsDefinition, asset: str, partitions: Sequence[str | None] | None
) -> list[str | None]:
    """``partitions``, checked against the asset's (``[None]`` for an unpartitioned asset).

    Raises:
        UserError: A partition the asset lacks, or none given for a partitioned asset.
    """
    partitions_def = assets_def.partitions_def
    if partitions_def is None:
        if partitions and partitions != [None]:
            raise UserError(f"asset '{asset}' is not partitioned; leave out the partitions")
        return [None]
    if not partitions:
        raise UserError(f"asset '{asset}' is partitioned: name the partitions to forecast")
    known = set(partitions_def.get_partition_keys())
    unknown = [p for p in partitions if p not in known]
    if unknown:
        raise UserError(f"asset '{asset}' has no partition {', '.join(map(str, unknown))}")
    return list(partitions)


def recipe_resources(
    recipe: Recipe, resources: Mapping[str, Any], asset: str
) -> tuple[LLMResource, ResponseLedger | None]:
    """The asset's ``LLMResource`` and ``ResponseLedger`` (``None`` without one) in ``resources``.

    Raises:
        UserError: No ``LLMResource`` under the asset's ``llm_resource_key``.
    """
    llm = resources.get(recipe.options.llm_resource_key)
    if not isinstance(llm, LLMResource):
        raise UserError(
            f"asset '{asset}' needs an LLMResource as '{recipe.options.llm_resource_key}'"
        )
    ledger = resources.get(recipe.options.ledger_resource_key or "")
    return llm, ledger if isinstance(ledger, ResponseLedger) else None


def upstream_frames(
    defs: CodeLocation,
    recipe: Recipe,
    keys: Iterable[str | None],
    asset: str,
    resources: Mapping[str, Any] | None = None,
) -> dict[str | None, pd.DataFrame]:
    """The rows each partition's step would prompt: the upstream tables, ``prepare`` applied.

    Raises:
        UserError: The upstream is not stored by a ``ParquetIOManager``, or a partition of it
            was never materialized.
    """
    upstream = recipe.upstream
    manager_key = assets_def_of(defs, upstream).get_io_manager_key_for_asset_key(upstream)
    manager = (resources if resources is not None else resources_of(defs)).get(manager_key)
    if not isinstance(manager, ParquetIOManager):
        raise UserError(
            f"the forecast reads '{upstream.to_user_string()}' through a ParquetIOManager, but "
            f"its IO manager '{manager_key}' is {type(manager).__name__}"
        )
    frames: dict[str | None, pd.DataFrame] = {}
    for key in keys:
        frame = manager.find_table(upstream, key)
        if frame is None:
            raise UserError(
                f"upstream '{upstream.to_user_string()}' of '{asset}' has no partition '{key}' "
                f"at {manager.uri_for(upstream, key)}: materialize it first"
            )
        prepare = recipe.options.prepare
        frames[key] = prepare(frame, key) if prepare is not None else frame
    return frames
