"""How llm-assets talks to the world: the LLM endpoint, rate limits, the ledger, storage.

Installed as ``llm_assets.resources``. Each family is a package whose ``__init__`` is its face:
``llm`` (resource, engine, prices, token estimates), ``ratelimit`` (shared adaptive limits),
``ledger`` (paid responses), ``storage`` (tables). ``errors`` holds the one error tree and
``settings`` how fields, URLs and default paths are read.
"""

from llm_assets.resources.errors import (
    AuthenticationFailed,
    BudgetExceededError,
    EndpointUnreachable,
    LLMAssetsError,
    MissingColumnsError,
    ModelNotFound,
    ProviderError,
    QuotaExhausted,
    UserError,
)
from llm_assets.resources.ledger import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
    LedgerUnavailableError,
    LedgerWriter,
    ResponseLedger,
)
from llm_assets.resources.llm import LLMResource, ModelPrice
from llm_assets.resources.ratelimit import AdaptiveRateLimiter
from llm_assets.resources.storage import ParquetIOManager

__all__ = [
    "AdaptiveRateLimiter",
    "AuthenticationFailed",
    "BudgetExceededError",
    "EndpointUnreachable",
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
