"""The fields of ``ResponseLedger``: where the ledger lives, how it claims, how long it waits.

What the resource does with them at run time (looking up, claiming, sending and recording; the
writer, the claims and the batch store) is in ``resource``.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from llm_assets.resources.ledger.location import postgres_url
from llm_assets.resources.settings import POSTGRES_URL_ENV_VAR


class ResponseLedgerConfig(dg.ConfigurableResource):
    """The configuration of the response ledger; ``ResponseLedger`` is the resource to use.

    Every field is described where it is declared; ``postgres_url`` is never logged.
    """

    backend: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        description="Where entries are stored: 'sqlite' (one host) or 'postgres' (shared).",
    )
    sqlite_path: str | None = Field(
        default=None,
        description="SQLite file; default $DAGSTER_HOME/ledger.sqlite (.dagster_home/ in the "
        "working directory when DAGSTER_HOME is unset). The parent directory is created.",
    )
    postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql:// or postgresql+psycopg2://) of the "
        f"'postgres' backend; default: the {POSTGRES_URL_ENV_VAR} environment variable, the "
        "server of Dagster's run storage. Pass dg.EnvVar(...) for another; it is never logged.",
    )
    postgres_schema: str = Field(
        default="llm_assets",
        description="PostgreSQL schema holding the 'responses' table; created if missing.",
    )
    claim_lease_s: float = Field(
        default=30.0,
        ge=0.0,
        description="Before sending, a step claims each request the ledger cannot answer, so "
        "steps that miss the same request at once pay for it once: the others wait for its "
        "answer. The claim is a lease of this many seconds, renewed every third of it while "
        "the step runs; when the step dies, the rows it held are free again after at most "
        "this long. 0 turns claims off (racing steps may then both pay).",
    )
    claim_poll_s: float = Field(
        default=1.0,
        gt=0.0,
        description="How often a step waiting on requests another step claimed checks the "
        "ledger for their answers (and for leases that ran out).",
    )
    outage_limit_s: float = Field(
        default=60.0,
        ge=0.0,
        description="How long the ledger's database may stay unreachable (a restart, a managed "
        "failover) before a step fails. Meanwhile lookups and claims wait, and answers that "
        "arrive are kept in memory and in a journal file, written when the database is back. "
        "0 fails at once.",
    )
    journal_dir: str | None = Field(
        default=None,
        description="Directory of the journals holding answers paid during an outage; default "
        "next to the SQLite file (<file>.unwritten/), or $DAGSTER_HOME/ledger.unwritten/<id>/ "
        "for PostgreSQL. A step that opens the ledger records what it finds there first.",
    )
    enabled: bool = Field(
        default=True,
        description="False disables the ledger for debugging: no lookups, no writes, every call "
        "is paid for.",
    )

    def _postgres_url(self) -> str:
        return postgres_url(self.postgres_url)
