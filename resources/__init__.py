"""How llm-assets talks to the world: LLM endpoint, rate limits, ledger, storage."""

from resources.errors import (
    AuthenticationFailed,
    BudgetExceededError,
    LLMAssetsError,
    MissingColumnsError,
    ModelNotFound,
    ProviderError,
    QuotaExhausted,
    UserError,
)
from resources.ledger import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
    LedgerUnavailableError,
    LedgerWriter,
    ResponseLedger,
)
from resources.llm import LLMResource
from resources.parquet_io import ParquetIOManager
from resources.pricing import ModelPrice
from resources.rate_limiter import AdaptiveRateLimiter

__all__ = [
    "AdaptiveRateLimiter",
    "AuthenticationFailed",
    "BudgetExceededError",
    "LLMAssetsError",
    "LLMResource",
    "LedgerBackend",
    "LedgerConfigError",
    "LedgerEntry",
    "LedgerError",
    "LedgerUnavailableError",
    "LedgerWriter",
    "MissingColumnsError",
    "ModelNotFound",
    "ModelPrice",
    "ParquetIOManager",
    "ProviderError",
    "QuotaExhausted",
    "ResponseLedger",
    "UserError",
]
