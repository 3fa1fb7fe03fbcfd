"""Planner assets: an LLM plans typed tool calls, run in parallel as dynamic outputs."""
