"""The example review pipeline with its LLM assets declared in YAML."""
