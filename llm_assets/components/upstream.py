"""Finding a component's upstream asset among the other definitions of its ``dg`` project.

An ``llm_asset`` takes its partitions from its upstream asset, which a YAML component names
only by key. The key is looked up in the definitions the project's defs folder builds: first
the other ``LLMAssetComponent`` of that name (an LLM asset prompting another one's table),
then every Python file and component in the folder, in order, until one defines the key.
Dagster caches what each builds, so loading the whole project builds nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

import dagster as dg
from dagster.components.core.decl import ComponentDecl
from dagster.components.core.defs_module import PythonFileComponent

from llm_assets.resources.errors import UserError


class UpstreamCycleError(UserError):
    """The upstream asset is being built because it depends, in turn, on the asking asset."""


#: Components whose upstream is being looked up, so a lookup never re-enters one of them.
_IN_PROGRESS: set[object] = set()


def find_upstream(
    context: dg.ComponentLoadContext,
    key: dg.AssetKey,
    component_type: type[dg.Component],
    produces: Callable[[dg.Component], Collection[dg.AssetKey]],
) -> tuple[dg.AssetsDefinition | dg.AssetSpec | None, list[str]]:
    """The definition of ``key`` in the project, and the keys seen while looking.

    Args:
        context: The load context of the component that asks.
        key: The upstream asset key.
        component_type: The LLM asset component class: a component of this type that
            ``produces`` ``key`` is built before anything else, the others are never built.
        produces: The asset keys a component of ``component_type`` defines.

    Returns:
        The definition (``None`` when no part of the project defines ``key``) and the sorted
        asset keys of the definitions built on the way, for the error message.
    """
    seen: set[str] = set()
    _IN_PROGRESS.add(context.component_loc)
    try:
        for decl in _candidates(context, key, component_type, produces, seen):
            found = _lookup(context.build_defs(decl.loc), key, seen)
            if found is not None:
                return found, sorted(seen)
    finally:
        _IN_PROGRESS.discard(context.component_loc)
    return None, sorted(seen)


def _candidates(
    context: dg.ComponentLoadContext,
    key: dg.AssetKey,
    component_type: type[dg.Component],
    produces: Callable[[dg.Component], Collection[dg.AssetKey]],
    seen: set[str],
) -> Iterator[ComponentDecl]:
    """Leaf declarations: the LLM component producing ``key`` first, then all but LLM ones.

    The keys of LLM components that are not built are added to ``seen``.
    """
    tree = context.component_tree
    decls = [
        decl
        for loc, decl in tree.find_root_decl().iterate_loc_component_decl_pairs()
        if loc != context.component_loc
        and (
            decl.component_type is PythonFileComponent
            or not any(True for _ in decl.iterate_child_component_decls())
        )
    ]
    rest: list[ComponentDecl] = []
    for decl in decls:
        if not _is_subclass(decl.component_type, component_type):
            if decl.loc not in _IN_PROGRESS:
                rest.append(decl)
            continue
        keys = produces(tree.load_structural_component_at_loc(decl.loc))
        if key in keys:
            if decl.loc in _IN_PROGRESS:
                raise UpstreamCycleError(key.to_user_string())
            yield decl
        seen.update(k.to_user_string() for k in keys)
    yield from rest


def _is_subclass(value: object, cls: type) -> bool:
    return isinstance(value, type) and issubclass(value, cls)


def _lookup(
    defs: dg.Definitions, key: dg.AssetKey, seen: set[str]
) -> dg.AssetsDefinition | dg.AssetSpec | None:
    for asset in defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition):
            keys = set(asset.keys)
        elif isinstance(asset, dg.AssetSpec):
            keys = {asset.key}
        else:
            continue
        seen.update(k.to_user_string() for k in keys)
        if key in keys:
            return asset
    return None
