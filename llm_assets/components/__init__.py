"""LLM assets declared in YAML: ``LLMAssetComponent`` for ``dg`` projects."""
