"""llm-assets: LLM batch work as partitioned, traceable Dagster assets.

The public API in one place::

    from llm_assets import LLMTask, llm_asset, LLMResource, ResponseLedger, ParquetIOManager

``llm_assets.resources`` (endpoint, rate limits, ledger, storage) and ``llm_assets.sensors``
hold the rest, each family with its own face.
"""

from llm_assets.factory import LLMAssetConfig, llm_asset
from llm_assets.forecast import Forecast, forecast_partitions
from llm_assets.options import AssetOptions
from llm_assets.planner import planned_asset, tool
from llm_assets.provenance import PROVENANCE_COLUMNS
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
from llm_assets.resources.ledger import ResponseLedger
from llm_assets.resources.llm import LLMResource
from llm_assets.resources.storage import ParquetIOManager
from llm_assets.review import ReviewDesk, ReviewPolicy, reviewed_asset
from llm_assets.spend import llm_spend_asset
from llm_assets.task import LLMTask
from llm_assets.trace import RowTrace, format_trace, trace_row
from llm_assets.versions import rematerialize_on_new_version, resolve_model_versions

__all__ = [  # noqa: RUF022 - plain sorted order
    "AssetOptions",
    "AuthenticationFailed",
    "BudgetExceededError",
    "EndpointUnreachable",
    "Forecast",
    "LLMAssetConfig",
    "LLMAssetsError",
    "LLMResource",
    "LLMTask",
    "MissingColumnsError",
    "ModelNotFound",
    "PROVENANCE_COLUMNS",
    "ParquetIOManager",
    "ProviderError",
    "QuotaExhausted",
    "ResponseLedger",
    "ReviewDesk",
    "ReviewPolicy",
    "RowTrace",
    "UserError",
    "forecast_partitions",
    "format_trace",
    "llm_asset",
    "llm_spend_asset",
    "planned_asset",
    "rematerialize_on_new_version",
    "resolve_model_versions",
    "reviewed_asset",
    "tool",
    "trace_row",
]
