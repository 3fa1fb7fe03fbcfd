"""``AssetOptions``: the keyword arguments ``llm_asset`` and ``planned_asset`` share.

Both factories take them as ``**options`` (typed with ``Unpack[AssetOptions]``), so they are
written, defaulted and documented once. ``ResolvedOptions.of`` checks the names and applies
the defaults that depend on the upstream (its partitions, a single-run backfill policy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import dagster as dg
import pandas as pd

from llm_assets.resources.errors import UserError

Prepare = Callable[[pd.DataFrame, str | None], pd.DataFrame]
"""``prepare(table, partition_key)``: turns an upstream partition's table into the rows."""


class AssetOptions(TypedDict, total=False):
    """Keyword arguments of ``llm_asset`` and ``planned_asset`` (all optional).

    Attributes:
        partitions_def: Partitions; defaults to the upstream definition's.
        prepare: ``prepare(table, partition_key)`` turns an upstream partition's table into
            the rows to prompt (e.g. one row per day that gathers the day's insights).
        passthrough_columns: Upstream columns copied to the output next to the id.
        max_cost_usd: Budget of new spend per materialization (run config can override) or,
            for a planner asset, of each of its LLM steps.
        group_name: Dagster asset group.
        description: What the asset is for, shown above the model, the prompts and the
            output schema in the asset's description.
        llm_resource_key: Resource key of the ``LLMResource`` (default ``"llm"``).
        ledger_resource_key: Resource key of the ``ResponseLedger`` (default ``"ledger"``);
            ``None`` for no ledger.
        io_manager_key: IO manager storing the output (default ``"io_manager"``).
        backfill_policy: Defaults to ``BackfillPolicy.single_run()`` for partitioned assets:
            a 30-day backfill is one run whose prompts share one pool of requests.
        tags: Asset tags.

    Examples:
        >>> options: AssetOptions = {"group_name": "enrichment", "max_cost_usd": 5.0}
        >>> ResolvedOptions.of(options, upstream="reviews").group_name
        'enrichment'
    """

    partitions_def: dg.PartitionsDefinition | None
    prepare: Prepare | None
    passthrough_columns: Sequence[str]
    max_cost_usd: float | None
    group_name: str | None
    description: str | None
    llm_resource_key: str
    ledger_resource_key: str | None
    io_manager_key: str
    backfill_policy: dg.BackfillPolicy | None
    tags: Mapping[str, str] | None


@dataclass(frozen=True)
class ResolvedOptions:
    """``AssetOptions`` with every default applied."""

    partitions_def: dg.PartitionsDefinition | None = None
    prepare: Prepare | None = None
    passthrough_columns: tuple[str, ...] = ()
    max_cost_usd: float | None = None
    group_name: str | None = None
    description: str | None = None
    llm_resource_key: str = "llm"
    ledger_resource_key: str | None = "ledger"
    io_manager_key: str = "io_manager"
    backfill_policy: dg.BackfillPolicy | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, Any], upstream: Any) -> ResolvedOptions:
        """The options given, checked by name, with the upstream's partitions as default.

        Raises:
            UserError: A name that is not an option, with the ones there are.
        """
        unknown = sorted(set(options) - set(AssetOptions.__annotations__))
        if unknown:
            raise UserError(
                f"unknown option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(AssetOptions.__annotations__)}"
            )
        given = dict(options)
        given["passthrough_columns"] = tuple(given.get("passthrough_columns") or ())
        given["tags"] = dict(given.get("tags") or {})
        partitions = given.get("partitions_def")
        if partitions is None and isinstance(upstream, dg.AssetsDefinition):
            given["partitions_def"] = partitions = upstream.partitions_def
        if given.get("backfill_policy") is None and partitions is not None:
            given["backfill_policy"] = dg.BackfillPolicy.single_run()
        return cls(**given)

    @property
    def resource_keys(self) -> set[str]:
        """The resources the asset's steps need."""
        keys = {self.llm_resource_key, self.io_manager_key}
        if self.ledger_resource_key:
            keys.add(self.ledger_resource_key)
        return keys
