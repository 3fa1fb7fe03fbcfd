"""Ledger building blocks: the entry type and the backend interface.

Its errors (`LedgerError`, `LedgerConfigError`, `LedgerUnavailableError`) are drawn in the one
tree of `llm_assets.resources.errors` and re-exported here.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core

from llm_assets.resources.errors import LedgerConfigError, LedgerError, LedgerUnavailableError

__all__ = [
    "LedgerBackend",
    "LedgerConfigError",
    "LedgerEntry",
    "LedgerError",
    "LedgerUnavailableError",
    "entry_to_row",
    "row_to_entry",
]


@dataclass(frozen=True)
class LedgerEntry:
    """One completed LLM call, as paid for and recorded by a Dagster run.

    Entries read from a backend hold ``response`` and ``request`` as JSON text and decode each on
    first access, so a bulk lookup does not pay to parse bodies the caller never reads. Either
    way the entry behaves as a plain frozen dataclass: it compares, copies and pickles by value.

    Attributes:
        key: sha256 hex digest of the canonical request; computed by the caller.
        response: The raw response body, as returned by the API.
        request: The canonical request body (model, messages, response_format, params). Never
            holds an API key.
        model: Model name reported by the API.
        input_tokens: Prompt tokens billed.
        output_tokens: Completion tokens billed.
        cost_usd: Cost of the call in US dollars.
        latency_s: Wall-clock duration of the call in seconds.
        created_at: When the response arrived; must be timezone-aware (stored as UTC).
        run_id: Dagster run that paid for the call.
        asset_key: Slash-joined asset key path, e.g. ``"review_insights"``.
        partition_key: Partition the row belonged to, if any.
        task_version: Version of the task definition that built the request.

    Examples:
        .. code-block:: python

            entry = LedgerEntry(
                key=request_key,
                response=body,
                request=canonical_request,
                model=body["model"],
                input_tokens=body["usage"]["prompt_tokens"],
                output_tokens=body["usage"]["completion_tokens"],
                cost_usd=0.00042,
                latency_s=0.8,
                created_at=datetime.now(timezone.utc),
                run_id=context.run_id,
                asset_key="review_insights",
                partition_key=context.partition_key,
                task_version="v1",
            )
    """

    key: str
    response: dict[str, Any]
    request: dict[str, Any]
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    created_at: datetime
    run_id: str
    asset_key: str
    partition_key: str | None
    task_version: str

    def __post_init__(self) -> None:
        if self.created_at.utcoffset() is None:
            raise ValueError(
                f"LedgerEntry.created_at must be timezone-aware (key {self.key}); "
                "use datetime.now(timezone.utc)"
            )

    @classmethod
    def from_json(
        cls,
        key: str,
        response_json: str,
        request_json: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_s: float,
        created_at: datetime,
        run_id: str,
        asset_key: str,
        partition_key: str | None,
        task_version: str,
    ) -> LedgerEntry:
        """Build an entry from stored JSON bodies, decoded on first access.

        Backends call this once per row, so it skips ``__init__``; ``created_at`` must already
        be timezone-aware.
        """
        entry = object.__new__(cls)
        object.__setattr__(
            entry,
            "__dict__",
            {
                "key": key,
                "_response_json": response_json,
                "_request_json": request_json,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": cost_usd,
                "latency_s": latency_s,
                "created_at": created_at,
                "run_id": run_id,
                "asset_key": asset_key,
                "partition_key": partition_key,
                "task_version": task_version,
            },
        )
        return entry

    def __getattr__(self, name: str) -> Any:
        # Python only gets here when `name` is not in the instance dict, i.e. for a body that
        # `from_json` left as text.
        raw = self.__dict__.get(f"_{name}_json") if name in _LAZY_BODIES else None
        if raw is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = pydantic_core.from_json(raw)
        object.__setattr__(self, name, value)
        # Dropped only after the parsed value is visible, so a racing thread finds one or both.
        self.__dict__.pop(f"_{name}_json", None)
        return value


_LAZY_BODIES = frozenset({"response", "request"})


class LedgerBackend(abc.ABC):
    """Storage behind the ledger. Implementations are safe across threads and processes."""

    @abc.abstractmethod
    def get_many(self, keys: Sequence[str]) -> dict[str, LedgerEntry]:
        """Return the stored entries for ``keys``; keys not in the ledger are absent."""

    @abc.abstractmethod
    def contains_many(self, keys: Sequence[str]) -> set[str]:
        """Return the subset of ``keys`` present in the ledger, without loading the bodies."""

    @abc.abstractmethod
    def put_many(self, entries: Sequence[LedgerEntry]) -> int:
        """Store ``entries``; an existing key is left untouched. Returns how many were new."""

    def get(self, key: str) -> LedgerEntry | None:
        """Return the entry stored under ``key``, or None."""
        return self.get_many([key]).get(key)

    @abc.abstractmethod
    def count(self) -> int:
        """Return the number of entries in the ledger."""

    @abc.abstractmethod
    def spend(
        self, *, run_id: str | None = None, asset_key: str | None = None
    ) -> tuple[int, float]:
        """Return ``(entries, total cost in USD)`` paid, optionally filtered by run and asset."""

    def claim_many(self, keys: Sequence[str], owner: str, lease_s: float) -> set[str]:
        """Claim the requests ``keys`` for ``owner`` for ``lease_s`` seconds; return those won.

        A key is won when the ledger holds no answer for it and no other owner holds a live
        lease on it (a lease that ran out counts as none; ``owner``'s own lease is extended).
        Each key is claimed atomically, so of several processes claiming one key at the same
        instant exactly one wins. This default claims every unanswered key and coordinates
        nothing; the bundled backends override it.
        """
        return set(keys) - self.contains_many(keys)

    def renew_claims(self, owner: str, lease_s: float) -> int:
        """Extend every lease ``owner`` holds to ``lease_s`` seconds from now; return how many."""
        return 0

    def release_claims(self, owner: str) -> None:  # noqa: B027 - optional, a no-op by default
        """Drop every claim ``owner`` holds, so others may claim those requests at once."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection; the backend cannot be used afterwards."""


def entry_to_row(entry: LedgerEntry, created_at: Any) -> tuple[object, ...]:
    """The column values of ``entry`` in storage order; ``created_at`` as the backend stores it."""
    return (
        entry.key,
        entry.model,
        entry.input_tokens,
        entry.output_tokens,
        entry.cost_usd,
        entry.latency_s,
        created_at,
        entry.run_id,
        entry.asset_key,
        entry.partition_key,
        entry.task_version,
        json.dumps(entry.request, separators=(",", ":"), ensure_ascii=False),
        json.dumps(entry.response, separators=(",", ":"), ensure_ascii=False),
    )


def row_to_entry(row: tuple[Any, ...], created_at: datetime) -> LedgerEntry:
    """An entry from stored column values (storage order), bodies decoded on first use."""
    key, model, in_tok, out_tok, cost, latency, _, run, asset, part, version, req, resp = row
    return LedgerEntry.from_json(
        key,
        resp,
        req,
        model,
        in_tok,
        out_tok,
        cost,
        latency,
        created_at,
        run,
        asset,
        part,
        version,
    )
