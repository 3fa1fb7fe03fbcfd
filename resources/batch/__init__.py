"""OpenAI Batch API mode: the client that submits and reads batches, and their durable records.

``BatchClient`` talks to the Batch API through the official SDK (``submit``, ``retrieve``,
``results``, ``cancel``); ``BatchStore`` keeps one ``BatchRecord`` per submitted batch in the
ledger's database (SQLite or PostgreSQL, see `ResponseLedger.batch_store`) and hands out the
``Claim`` that makes submission idempotent.
"""

from llm_assets.resources.batch.client import BatchClient
from llm_assets.resources.batch.jsonl import MAX_BYTES_PER_FILE, MAX_LINES_PER_FILE, BatchLine
from llm_assets.resources.batch.postgres import PostgresBatchStore
from llm_assets.resources.batch.records import (
    BATCH_ID_FIELD,
    BATCH_STATES,
    HARVESTED,
    OPENAI_STATES,
    TERMINAL_STATES,
    BatchRecord,
    Claim,
)
from llm_assets.resources.batch.sqlite import SQLiteBatchStore
from llm_assets.resources.batch.status import BatchStatus, SubmittedBatch
from llm_assets.resources.batch.store import BatchStore

__all__ = [
    "BATCH_ID_FIELD",
    "BATCH_STATES",
    "HARVESTED",
    "MAX_BYTES_PER_FILE",
    "MAX_LINES_PER_FILE",
    "OPENAI_STATES",
    "TERMINAL_STATES",
    "BatchClient",
    "BatchLine",
    "BatchRecord",
    "BatchStatus",
    "BatchStore",
    "Claim",
    "PostgresBatchStore",
    "SQLiteBatchStore",
    "SubmittedBatch",
]
