"""Where a ledger lives: its SQLite file, its PostgreSQL URL, its outage journals."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from llm_assets.resources.errors import LedgerConfigError, UserError
from llm_assets.resources.settings import (
    POSTGRES_URL_ENV_VAR,
    dagster_home,
    mask_url,
    resolve_setting,
)


def sqlite_file(sqlite_path: str | None) -> Path:
    """The SQLite file: ``sqlite_path``, else ``$DAGSTER_HOME/ledger.sqlite``.

    Examples:
        >>> sqlite_file("/data/ledger.sqlite")
        PosixPath('/data/ledger.sqlite')
    """
    path = resolve_setting(sqlite_path, field="ResponseLedger.sqlite_path")
    return Path(path) if path else dagster_home() / "ledger.sqlite"


def postgres_url(configured: str | None) -> str:
    """The PostgreSQL URL: ``configured``, else the ``DAGSTER_PG_URL`` environment variable.

    Raises:
        LedgerConfigError: Neither is set, or ``configured`` names an unset variable.
    """
    try:
        url = resolve_setting(configured, field="ResponseLedger.postgres_url")
    except UserError as exc:
        raise LedgerConfigError(str(exc)) from None
    url = url or os.environ.get(POSTGRES_URL_ENV_VAR)
    if not url:
        raise LedgerConfigError(
            "ResponseLedger(backend='postgres') needs a database: export "
            f"{POSTGRES_URL_ENV_VAR}=postgresql+psycopg2://user:password@host:5432/dbname "
            "(the server of Dagster's run storage works) or pass "
            "postgres_url=dg.EnvVar('<VARIABLE>')"
        )
    return url


def journal_dir(
    configured: str | None,
    *,
    sqlite: Path | None = None,
    postgres: tuple[str, str] | None = None,
) -> Path:
    """The directory of a ledger's outage journals.

    ``configured`` when set; else next to the SQLite file, or, for a PostgreSQL ledger (its URL
    and schema), a directory under ``$DAGSTER_HOME`` named after the database.

    Examples:
        >>> journal_dir(None, sqlite=Path("/data/ledger.sqlite"))
        PosixPath('/data/ledger.sqlite.unwritten')
    """
    path = resolve_setting(configured, field="ResponseLedger.journal_dir")
    if path:
        return Path(path)
    if sqlite is not None:
        return sqlite.with_name(sqlite.name + ".unwritten")
    url, schema = postgres or ("", "")
    digest = hashlib.sha256(f"{mask_url(url)}/{schema}".encode()).hexdigest()[:12]
    return dagster_home() / "ledger.unwritten" / digest
