"""The response ledger: a durable, content-addressed store of paid-for LLM responses.

``ResponseLedger`` is the resource and ``ResponseLedger.answer`` the one call that looks up,
claims, sends and records (``Payer``, ``Send``, ``Answers``, ``LedgerFigures``);
``LedgerEntry`` is one paid response; ``LedgerWriter`` records responses as they arrive,
keeping them in a ``LedgerJournal`` through an outage; ``RequestClaims`` leases the requests
a step is paying for, so racing steps pay once; ``spend_rollup`` sums spend by day, asset and
model; the SQLite and PostgreSQL backends implement ``LedgerBackend`` on a ``SQLiteDatabase`` or
``PostgresDatabase`` (`llm_assets.resources.sqlite`, `llm_assets.resources.database`), which
the batch stores share.
"""

from llm_assets.resources.database import ConnectionPool, PostgresDatabase
from llm_assets.resources.ledger.answer import Answers, LedgerFigures, Payer, Send
from llm_assets.resources.ledger.claims import RequestClaims, claim_owner
from llm_assets.resources.ledger.core import (
    LedgerBackend,
    LedgerConfigError,
    LedgerEntry,
    LedgerError,
    LedgerUnavailableError,
)
from llm_assets.resources.ledger.journal import LedgerJournal, replay_journals
from llm_assets.resources.ledger.postgres import PostgresLedgerBackend
from llm_assets.resources.ledger.resource import ResponseLedger
from llm_assets.resources.ledger.rollup import SpendRow, spend_rollup
from llm_assets.resources.ledger.sqlite import SQLiteLedgerBackend
from llm_assets.resources.ledger.writer import LedgerWriter
from llm_assets.resources.sqlite import SQLiteDatabase

__all__ = [
    "Answers",
    "ConnectionPool",
    "LedgerBackend",
    "LedgerConfigError",
    "LedgerEntry",
    "LedgerError",
    "LedgerFigures",
    "LedgerJournal",
    "LedgerUnavailableError",
    "LedgerWriter",
    "Payer",
    "PostgresDatabase",
    "PostgresLedgerBackend",
    "RequestClaims",
    "ResponseLedger",
    "SQLiteDatabase",
    "SQLiteLedgerBackend",
    "Send",
    "SpendRow",
    "claim_owner",
    "replay_journals",
    "spend_rollup",
]
