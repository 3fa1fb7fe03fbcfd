"""The code location: everything in ``defs/``, with model-aware code versions."""

from pathlib import Path

import dagster as dg

from llm_assets import resolve_model_versions


@dg.definitions
def defs() -> dg.Definitions:
    """Assets from ``defs/`` (Python files and ``defs.yaml`` components) and their resources."""
    return resolve_model_versions(
        dg.components.load_from_defs_folder(path_within_project=Path(__file__).parent)
    )
