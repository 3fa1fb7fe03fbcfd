"""How llm-assets talks to the world: LLM endpoint, ledger, storage."""

from resources.ledger import LedgerEntry, ResponseLedger
from resources.llm import LLMResource
from resources.parquet_io import ParquetIOManager
from resources.pricing import ModelPrice

__all__ = [
    "LLMResource",
    "LedgerEntry",
    "ModelPrice",
    "ParquetIOManager",
    "ResponseLedger",
]
