"""Definitions of the project: Python files and ``defs.yaml`` components, loaded by dg."""
