"""Where tables live: the Parquet IO manager."""

from llm_assets.resources.storage.parquet import ParquetIOManager

__all__ = ["ParquetIOManager"]
