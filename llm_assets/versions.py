"""Code versions, descriptions and kinds that cover what is actually sent.

An ``LLMTask`` without ``model`` is answered by ``LLMResource.model``, which the asset factory
cannot see: it is chosen when ``Definitions`` bind resources. ``resolve_model_versions`` runs
after that binding and gives every such asset the version of its task *with* that model, so
that changing the model marks the asset stale in the UI like a prompt change does. The same
step names the model and the endpoint (from ``LLMResource.base_url``: ``openai``, ``vllm``,
``simulator``...) in the asset's description and kind badge.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg

from llm_assets.describe import task_description
from llm_assets.endpoints import DEFAULT_KIND, endpoint_kind
from llm_assets.resources.errors import UserError
from llm_assets.resources.settings import resolve_setting
from llm_assets.task import LLMTask


@dataclass(frozen=True)
class _Registered:
    task: LLMTask
    llm_resource_key: str
    is_table: bool
    upstream: str
    intro: str | None


# By the definition object, so that two definitions of one key in a process (a YAML and a
# Python variant, a test suite) never take each other's task; by key and code version for a
# definition copied since (its specs keep the factory's version until resolved).
_BY_DEFINITION: dict[int, tuple[weakref.ref[dg.AssetsDefinition], dict[dg.AssetKey, Any]]] = {}
_TASKS: dict[tuple[dg.AssetKey, str], _Registered] = {}
_TABLES: set[dg.AssetKey] = set()


def register_llm_asset(
    key: dg.AssetKey,
    task: LLMTask,
    llm_resource_key: str,
    *,
    is_table: bool = True,
    upstream: str = "upstream",
    intro: str | None = None,
    definition: dg.AssetsDefinition | None = None,
) -> None:
    """Remembers which task and LLM resource key the ``llm_asset`` ``key`` uses.

    Args:
        key: The asset's key.
        task: The task it answers.
        llm_resource_key: Resource key of its ``LLMResource``.
        is_table: ``True`` for the output table, ``False`` for its quarantine.
        upstream: The upstream asset, for the description.
        intro: The user's own description, shown before the task's details.
        definition: The assets definition holding ``key``.
    """
    entry = _Registered(task, llm_resource_key, is_table, upstream, intro)
    _TASKS[(key, task.version)] = entry
    if definition is not None:
        ref = _BY_DEFINITION.get(id(definition))
        if ref is None or ref[0]() is not definition:
            ref = (weakref.ref(definition), {})
            _BY_DEFINITION[id(definition)] = ref
        ref[1][key] = entry
    if is_table:
        _TABLES.add(key)


def is_llm_table(key: dg.AssetKey) -> bool:
    """Whether ``key`` is the output table of an ``llm_asset`` defined in this process.

    Examples:
        >>> is_llm_table(dg.AssetKey("not_an_llm_asset"))
        False
    """
    return key in _TABLES


def resolve_model_versions(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with each ``llm_asset``'s code version covering the model it is sent with.

    Tasks that name a model keep their version. For the others, the model is read from the
    ``LLMResource`` bound in ``defs`` (an ``EnvVar`` model is read from the environment when
    the code location loads).

    Args:
        defs: Definitions holding ``llm_asset`` assets and their ``LLMResource``.

    Returns:
        The same definitions with updated code versions.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets import llm_asset, resolve_model_versions
            from llm_assets.resources import LLMResource

            defs = resolve_model_versions(
                dg.Definitions(
                    assets=[raw_reviews, llm_asset(task, upstream=raw_reviews)],
                    resources={"llm": LLMResource(model="gpt-4.1-mini", api_key=...)},
                )
            )
    """
    resources: dict[str, Any] = dict(defs.resources or {})
    in_defs: dict[dg.AssetKey, _Registered] = {}
    for asset in defs.assets or ():
        ref = _BY_DEFINITION.get(id(asset))
        if ref is not None and ref[0]() is asset:
            in_defs.update(ref[1])

    def with_model(spec: dg.AssetSpec) -> dg.AssetSpec:
        # A spec resolved once carries the version with the model: it is not found again.
        entry = _TASKS.get((spec.key, spec.code_version or ""))
        if entry is None:
            return spec
        entry = in_defs.get(spec.key, entry)
        task = entry.task
        resource = resources.get(entry.llm_resource_key)
        model = resolve_setting(getattr(resource, "model", None), field="LLMResource.model")
        if not entry.is_table:
            if task.model is not None or not model:
                return spec
            return spec.replace_attributes(code_version=task.version_for(model))
        endpoint = _endpoint(resource)
        changes: dict[str, Any] = {}
        if endpoint is not None:
            changes["kinds"] = (set(spec.kinds) - {DEFAULT_KIND}) | {endpoint}
        sent_model = task.model or model
        changes["description"] = task_description(
            task,
            upstream=entry.upstream,
            intro=entry.intro,
            model=sent_model,
            endpoint=endpoint,
            prices=getattr(resource, "price_book", None),
            asset=spec.key.to_user_string(),
        )
        if task.model is None and model:
            version = task.version_for(model)
            metadata = dict(spec.metadata)
            if "task_version" in metadata:
                metadata.update(task_version=version, model=f"{model} (LLMResource.model)")
            changes.update(code_version=version, metadata=metadata)
        return spec.replace_attributes(**changes)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # map_asset_specs is marked beta in Dagster 1.13
        return defs.map_asset_specs(func=with_model)


def _endpoint(resource: Any) -> str | None:
    """The endpoint kind of an ``LLMResource``; ``None`` when it cannot be told at load time."""
    if resource is None or not hasattr(resource, "base_url"):
        return None
    try:
        return endpoint_kind(resolve_setting(resource.base_url, field="LLMResource.base_url"))
    except UserError:
        return None  # an EnvVar that is not set where the definitions load


def rematerialize_on_new_version(
    lookback: timedelta = timedelta(days=7),
) -> dg.AutomationCondition:
    """Re-materializes the recent partitions that were built by an older task version.

    Editing a prompt, the schema or the model gives the asset a new code version; Dagster then
    shows its materialized partitions as stale ("code version changed"), one by one, and
    downstream assets only notice once the asset is re-materialized. With this condition the
    automation daemon requests, once, every partition inside ``lookback`` that exists and was
    built before the change; the asset's ``max_cost_usd`` still bounds each run's spend, and
    the ledger answers every request that did not change. Give downstream assets
    ``dg.AutomationCondition.eager()`` so they follow.

    Args:
        lookback: How far back time partitions are redone (all partitions when the asset is
            not time-partitioned).

    Returns:
        The condition, for ``llm_asset(..., automation_condition=...)``.

    Examples:
        >>> condition = rematerialize_on_new_version(timedelta(days=3))
        >>> condition.get_label()
        're-materialize partitions of the last 3 days built by an older version'
    """
    whole_days = lookback.seconds == 0 and lookback.microseconds == 0
    window = f"{lookback.days} days" if whole_days else str(lookback)
    # Typed loosely: Dagster's stubs type these builtins for asset keys only.
    changed: dg.AutomationCondition[Any] = dg.AutomationCondition.code_version_changed()
    return (
        dg.AutomationCondition.in_latest_time_window(lookback)
        & ~dg.AutomationCondition.missing()
        & changed.since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"re-materialize partitions of the last {window} built by an older version")
