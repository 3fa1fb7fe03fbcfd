"""Opens the rate-limit store a resource names: one per kind and location per process.

The stores themselves (``store``, ``sql``, ``postgres``) do not know each other; only this
module picks one, so the family has no import cycle.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from llm_assets.resources.errors import UserError
from llm_assets.resources.ratelimit.postgres import PostgresRateLimitStore
from llm_assets.resources.ratelimit.sql import SQLiteRateLimitStore
from llm_assets.resources.ratelimit.store import MemoryRateLimitStore, RateLimitStore, StoreKind
from llm_assets.resources.settings import dagster_home

_OPEN_STORES: dict[tuple[int, str, str], RateLimitStore] = {}
_OPEN_LOCK = threading.Lock()


def default_sqlite_path() -> Path:
    """``$DAGSTER_HOME/llm_assets_rate_limits.sqlite``, next to the Dagster instance.

    Without ``DAGSTER_HOME`` it is ``.dagster_home/`` in the working directory, where this
    project's Makefile points Dagster.
    """
    return dagster_home() / "llm_assets_rate_limits.sqlite"


def open_rate_limit_store(
    kind: StoreKind, *, sqlite_path: str | None = None, postgres_url: str | None = None
) -> RateLimitStore:
    """The process-wide store of ``kind``: every step of this process shares one per location.

    Args:
        kind: ``memory``, ``sqlite`` or ``postgres``.
        sqlite_path: The SQLite file; ``default_sqlite_path()`` when None.
        postgres_url: The PostgreSQL URL; required for ``postgres``.

    Returns:
        An open store, cached for the life of the process.

    Raises:
        UserError: ``postgres`` without a URL, or an unknown kind.

    Examples:
        >>> open_rate_limit_store("memory") is open_rate_limit_store("memory")
        True
    """
    if kind == "memory":
        location = ""
    elif kind == "sqlite":
        location = str(Path(sqlite_path or default_sqlite_path()).resolve())
    elif kind == "postgres":
        if not postgres_url:
            raise UserError(
                "LLMResource.rate_limit_store is 'postgres' but rate_limit_postgres_url is not "
                "set; pass rate_limit_postgres_url=dg.EnvVar('DAGSTER_PG_URL') (the server of "
                "Dagster's run storage works) or use rate_limit_store='sqlite' on one host"
            )
        location = postgres_url
    else:
        raise UserError(f"unknown rate_limit_store {kind!r}; use 'memory', 'sqlite' or 'postgres'")
    # Keyed by pid too: a connection inherited through fork() must not be shared.
    cache_key = (os.getpid(), kind, location)
    with _OPEN_LOCK:
        store = _OPEN_STORES.get(cache_key)
        if store is None:
            store = _OPEN_STORES[cache_key] = _open(kind, location)
        return store


def _open(kind: str, location: str) -> RateLimitStore:
    if kind == "memory":
        return MemoryRateLimitStore()
    if kind == "sqlite":
        return SQLiteRateLimitStore(location)
    return PostgresRateLimitStore(location)
