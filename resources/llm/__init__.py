"""The LLM endpoint: the ``LLMResource``, its async engine, prices and token estimates."""

from llm_assets.resources.llm.config import DEFAULT_CONTEXT_WINDOWS
from llm_assets.resources.llm.engine import ChatEngine, ProgressCallback, ResultCallback
from llm_assets.resources.llm.models import is_reasoning_model
from llm_assets.resources.llm.offline import OFFLINE_ENV, check_offline_guard, is_loopback
from llm_assets.resources.llm.pricing import (
    SIMULATOR_PRICES,
    ModelPrice,
    PriceBook,
    cache_saving_usd,
    cost_usd,
    find_price,
)
from llm_assets.resources.llm.resource import LLMResource
from llm_assets.resources.llm.results import usage_details
from llm_assets.resources.llm.schema import (
    SchemaProblem,
    strict_schema_problems,
    to_strict_json_schema,
)
from llm_assets.resources.llm.tokens import estimate_prompt_tokens, estimate_tokens
from llm_assets.resources.llm.types import ChatRequest, ChatResult, EngineStats

__all__ = [
    "DEFAULT_CONTEXT_WINDOWS",
    "OFFLINE_ENV",
    "SIMULATOR_PRICES",
    "ChatEngine",
    "ChatRequest",
    "ChatResult",
    "EngineStats",
    "LLMResource",
    "ModelPrice",
    "PriceBook",
    "ProgressCallback",
    "ResultCallback",
    "SchemaProblem",
    "cache_saving_usd",
    "check_offline_guard",
    "cost_usd",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "find_price",
    "is_loopback",
    "is_reasoning_model",
    "strict_schema_problems",
    "to_strict_json_schema",
    "usage_details",
]
