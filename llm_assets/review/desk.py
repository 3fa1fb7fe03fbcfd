"""``ReviewDesk``: list flagged rows and decide them from Python (the page and CLI use it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import ValidationError

from llm_assets.recipes import CodeLocation, Recipe, recipe_of, resources_of
from llm_assets.resources.errors import UserError
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.review import (
    DecisionRecord,
    ReviewItem,
    ReviewRefused,
    ReviewRound,
    ReviewStore,
)
from llm_assets.review.gate import policy_of
from llm_assets.review.policy import ReviewPolicy
from llm_assets.task import LLMTask


@dataclass(frozen=True)
class Gate:
    """An ``llm_asset`` with a review policy, as the desk sees it."""

    asset_key: str
    recipe: Recipe
    policy: ReviewPolicy
    ledger: ResponseLedger

    @property
    def task(self) -> LLMTask:
        """The gate's task (its schema validates edits)."""
        return self.recipe.task


class ReviewDesk:
    """The review gates of a code location, and the decisions people make on their rows.

    Every decision goes through ``ReviewStore.decide``: an unknown id, a stale row, a row
    decided in between and an edit that breaks the task's schema are refused with a sentence,
    and nothing is recorded.

    Args:
        gates: The gates by asset key.

    Examples:
        .. code-block:: python

            from llm_assets.review import ReviewDesk
            from reviews_example.definitions import defs

            desk = ReviewDesk.of(defs)
            for item in desk.items("review_insights", "2026-11-01"):
                desk.approve(item.item_id, reviewer="ana")
    """

    def __init__(self, gates: Mapping[str, Gate]) -> None:
        self.gates = dict(gates)

    @classmethod
    def of(cls, location: CodeLocation) -> ReviewDesk:
        """The desk of every ``llm_asset`` with a review policy in ``location``.

        Raises:
            UserError: A gate without a ``ResponseLedger`` resource.
        """
        resources = resources_of(location)
        gates: dict[str, Gate] = {}
        defs = (
            location.assets or []
            if isinstance(location, dg.Definitions)
            else location.assets_defs_by_key.values()
        )
        for definition in defs:
            if not isinstance(definition, dg.AssetsDefinition):
                continue
            recipe, policy = recipe_of(definition), policy_of(definition)
            if recipe is None or policy is None:
                continue
            key = recipe.options.ledger_resource_key or "ledger"
            ledger = resources.get(key)
            if not isinstance(ledger, ResponseLedger):
                raise UserError(
                    f"review gate '{recipe.table.to_user_string()}' needs a ResponseLedger "
                    f"as resource '{key}'"
                )
            name = recipe.table.to_user_string()
            gates[name] = Gate(name, recipe, policy, ledger)
        return cls(gates)

    def gate(self, asset_key: str) -> Gate:
        """The gate ``asset_key``.

        Raises:
            UserError: No such gate (the message names those there are).
        """
        found = self.gates.get(asset_key)
        if found is None:
            known = ", ".join(sorted(self.gates)) or "none"
            raise UserError(f"no review gate '{asset_key}'; the gates are: {known}")
        return found

    def _store(self, asset_key: str) -> ReviewStore:
        return self.gate(asset_key).ledger.review_store()

    def rounds(self) -> list[ReviewRound]:
        """The latest review of every partition of every gate (pending ones and done)."""
        found: list[ReviewRound] = []
        by_ledger: dict[int, tuple[ResponseLedger, list[str]]] = {}
        for name, gate in self.gates.items():
            by_ledger.setdefault(id(gate.ledger), (gate.ledger, []))[1].append(name)
        for ledger, names in by_ledger.values():
            found += ledger.review_store().latest_rounds(names)
        return sorted(found, key=lambda r: (r.asset_key, r.partition_key or ""))

    def items(
        self,
        asset_key: str,
        partition_key: str | None,
        *,
        status: str | None = "pending",
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReviewItem]:
        """A page of a partition's flagged rows (``status=None``: every status)."""
        store = self._store(asset_key)
        return store.items(asset_key, partition_key, status=status, limit=limit, offset=offset)

    def counts(self, asset_key: str, partition_key: str | None) -> dict[str, int]:
        """How many flagged rows of the partition have each status."""
        return self._store(asset_key).counts(asset_key, partition_key)

    def item(self, item_id: str) -> ReviewItem:
        """The flagged row ``item_id``.

        Raises:
            ReviewRefused: No such row.
        """
        stores = {id(g.ledger): g.ledger for g in self.gates.values()}
        for ledger in stores.values():
            found = ledger.review_store().item(item_id)
            if found is not None and found.asset_key in self.gates:
                return found
        raise ReviewRefused(
            f"no row to review has id {item_id!r}: list them with `python -m llm_assets review "
            "list`"
        )

    def history(self, item: ReviewItem) -> list[DecisionRecord]:
        """Every decision on the row's content, oldest first."""
        return self._store(item.asset_key).history(item.request_key, item.task_version)

    def prompt(self, item: ReviewItem) -> list[dict[str, Any]]:
        """The messages the row's request sent, from the ledger (empty if not recorded)."""
        entry = self.gate(item.asset_key).ledger.get(item.request_key)
        return list(entry.request.get("messages", [])) if entry is not None else []

    def approve(self, item_id: str, reviewer: str, **seen: Any) -> DecisionRecord:
        """Approves the row's answer as it is.

        Args:
            item_id: The row's review id.
            reviewer: Who decides.
            **seen: ``seen_revision`` (to change an earlier decision), ``task_version``,
                ``comment``.
        """
        return self._decide(item_id, "approved", reviewer, **seen)

    def reject(self, item_id: str, reviewer: str, reason: str, **seen: Any) -> DecisionRecord:
        """Rejects the row: it goes to the reviewed asset's quarantine with ``reason``."""
        return self._decide(item_id, "rejected", reviewer, comment=reason, **seen)

    def edit(
        self, item_id: str, reviewer: str, value: Mapping[str, Any], **seen: Any
    ) -> DecisionRecord:
        """Replaces the row's answer with ``value``, validated against the task's schema.

        Raises:
            ReviewRefused: ``value`` does not match the schema (each problem named).
        """
        item = self.item(item_id)
        schema = self.gate(item.asset_key).task.output_schema
        try:
            answer = schema.model_validate(dict(value)).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()
            )
            raise ReviewRefused(
                f"the edit of row {item.row_id} does not match {schema.__name__}: {problems}; "
                "nothing recorded"
            ) from None
        return self._decide(item_id, "edited", reviewer, value=answer, **seen)

    def _decide(self, item_id: str, decision: Any, reviewer: str, **kwargs: Any) -> DecisionRecord:
        item = self.item(item_id)
        return self._store(item.asset_key).decide(item_id, decision, reviewer, **kwargs)
