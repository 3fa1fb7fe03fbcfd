"""Code versions that cover what is actually sent, including the resource's default model.

An ``LLMTask`` without ``model`` is answered by ``LLMResource.model``, which the asset factory
cannot see: it is chosen when ``Definitions`` bind resources. ``resolve_model_versions`` runs
after that binding and gives every such asset the version of its task *with* that model, so
that changing the model marks the asset stale in the UI like a prompt change does.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import dagster as dg

from llm_assets.resources.settings import resolve_setting
from llm_assets.task import LLMTask

_TASKS: dict[dg.AssetKey, tuple[LLMTask, str]] = {}


def register_llm_asset(key: dg.AssetKey, task: LLMTask, llm_resource_key: str) -> None:
    """Remembers which task and LLM resource key the ``llm_asset`` ``key`` uses."""
    _TASKS[key] = (task, llm_resource_key)


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

    def with_model(spec: dg.AssetSpec) -> dg.AssetSpec:
        entry = _TASKS.get(spec.key)
        if entry is None:
            return spec
        task, resource_key = entry
        resource = resources.get(resource_key)
        model = resolve_setting(getattr(resource, "model", None), field="LLMResource.model")
        if task.model is not None or not model:
            return spec
        version = task.version_for(model)
        metadata = dict(spec.metadata)
        if "task_version" in metadata:
            metadata.update(task_version=version, model=f"{model} (LLMResource.model)")
        return spec.replace_attributes(code_version=version, metadata=metadata)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # map_asset_specs is marked beta in Dagster 1.13
        return defs.map_asset_specs(func=with_model)


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
