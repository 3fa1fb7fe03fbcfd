"""The response ledger: a durable, content-addressed store of paid-for LLM responses.

``ResponseLedger`` is the resource; ``LedgerEntry`` one paid response; ``LedgerWriter`` records
responses as they arrive; ``RequestClaims`` leases the requests a step is paying for, so racing
steps pay once; ``spend_rollup`` sums spend by day, asset and model; the SQLite and
PostgreSQL backends implement ``LedgerBackend`` on a ``SQLiteDatabase`` or
``PostgresDatabase`` (`llm_assets.resources.sqlite`, `llm_assets.resources.database`), which
the batch stores share.
"""

from llm_assets.resources.database import ConnectionPool, PostgresDatabase
from llm_assets.resources.ledger.claims import RequestClaims, claim_owner
from llm_assets.resources.ledger.core import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
    LedgerUnavailableError,
)
from llm_assets.resources.ledger.postgres import PostgresLedgerBackend
from llm_assets.resources.ledger.resource import ResponseLedger
from llm_assets.resources.ledger.rollup import SpendRow, spend_rollup
from llm_assets.resources.ledger.sqlite import SQLiteLedgerBackend
from llm_assets.resources.ledger.writer import LedgerWriter
from llm_assets.resources.sqlite import SQLiteDatabase

__all__ = [
    "ConnectionPool",
    "LedgerBackend",
    "LedgerConfigError",
    "LedgerEntry",
    "LedgerError",
    "LedgerUnavailableError",
    "LedgerWriter",
    "PostgresDatabase",
    "PostgresLedgerBackend",
    "RequestClaims",
    "ResponseLedger",
    "SQLiteDatabase",
    "SQLiteLedgerBackend",
    "SpendRow",
    "claim_owner",
    "spend_rollup",
]
