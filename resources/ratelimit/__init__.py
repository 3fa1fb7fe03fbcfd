"""Rate limits shared by every caller of one API key: learned from headers, paced by GCRA.

``AdaptiveRateLimiter`` is what the engine consults before each attempt. Its state lives in a
``RateLimitStore``: memory (one process), SQLite (one host) or PostgreSQL (every host), chosen
by ``open_rate_limit_store``.
"""

from llm_assets.resources.ratelimit.headers import (
    RateLimiter,
    RateLimitHeaders,
    UnlimitedRateLimiter,
    parse_duration,
    parse_rate_limit_headers,
)
from llm_assets.resources.ratelimit.limiter import AdaptiveRateLimiter
from llm_assets.resources.ratelimit.open import default_sqlite_path, open_rate_limit_store
from llm_assets.resources.ratelimit.postgres import PostgresRateLimitStore
from llm_assets.resources.ratelimit.sql import SQLiteRateLimitStore
from llm_assets.resources.ratelimit.store import (
    BucketPolicy,
    BucketRates,
    MemoryRateLimitStore,
    RateLimitStore,
    Reservation,
    StoreKind,
    limit_key,
)

__all__ = [
    "AdaptiveRateLimiter",
    "BucketPolicy",
    "BucketRates",
    "MemoryRateLimitStore",
    "PostgresRateLimitStore",
    "RateLimitHeaders",
    "RateLimitStore",
    "RateLimiter",
    "Reservation",
    "SQLiteRateLimitStore",
    "StoreKind",
    "UnlimitedRateLimiter",
    "default_sqlite_path",
    "limit_key",
    "open_rate_limit_store",
    "parse_duration",
    "parse_rate_limit_headers",
]
