"""llm-assets: LLM batch work as partitioned, traceable Dagster assets."""

from llm_assets.factory import LLMAssetConfig, llm_asset
from llm_assets.provenance import PROVENANCE_COLUMNS
from llm_assets.task import LLMTask
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

__all__ = [
    "PROVENANCE_COLUMNS",
    "AuthenticationFailed",
    "BudgetExceededError",
    "LLMAssetConfig",
    "LLMAssetsError",
    "LLMTask",
    "MissingColumnsError",
    "ModelNotFound",
    "ProviderError",
    "QuotaExhausted",
    "UserError",
    "llm_asset",
]
