"""LLM assets declared in YAML: ``LLMAssetComponent`` for ``dg`` projects.

Registered with ``dg`` through the ``dagster_dg_cli.registry_modules`` entry point, so
``dg list components`` shows it and ``defs.yaml`` files name it as
``type: llm_assets.components.LLMAssetComponent``.
"""

from llm_assets.components.llm_asset_component import ComponentConfigError, LLMAssetComponent
from llm_assets.components.schema import SchemaError, import_model, model_from_json_schema

__all__ = [
    "ComponentConfigError",
    "LLMAssetComponent",
    "SchemaError",
    "import_model",
    "model_from_json_schema",
]
