"""When llm-assets runs: sensors that turn outside events into runs (``llm_assets.sensors``)."""
