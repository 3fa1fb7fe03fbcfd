"""llm-assets: LLM batch work as partitioned, traceable Dagster assets."""

from llm_assets.factory import LLMAssetConfig, llm_asset
from llm_assets.provenance import PROVENANCE_COLUMNS
from llm_assets.resources.errors import (
    AuthenticationFailed,
    BudgetExceededError,
    LLMAssetsError,
    MissingColumnsError,
    ModelNotFound,
    ProviderError,
    QuotaExhausted,
    UserError,
)
from llm_assets.task import LLMTask
from llm_assets.trace import RowTrace, format_trace, trace_row
from llm_assets.versions import resolve_model_versions

__all__ = [  # noqa: RUF022 - plain sorted order, checked by tests/test_public_api.py
    "AuthenticationFailed",
    "BudgetExceededError",
    "LLMAssetConfig",
    "LLMAssetsError",
    "LLMTask",
    "MissingColumnsError",
    "ModelNotFound",
    "PROVENANCE_COLUMNS",
    "ProviderError",
    "QuotaExhausted",
    "RowTrace",
    "UserError",
    "format_trace",
    "llm_asset",
    "resolve_model_versions",
    "trace_row",
]
