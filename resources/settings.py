"""Settings shared by every resource: ``dg.EnvVar`` values, PostgreSQL URLs, default paths.

One place decides how a field that may hold a ``dg.EnvVar`` is read, how a PostgreSQL URL is
shown in a message (never with its password), and where files go when no path is given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import dagster as dg

from llm_assets.resources.errors import UserError

POSTGRES_URL_ENV_VAR = "DAGSTER_PG_URL"
"""The variable every PostgreSQL-backed piece reads by default (instance, ledger, limiter)."""

_PASSWORD_IN_URL = re.compile(r"^(?P<head>[^:/?#]+://[^:@/?#]*):(?P<password>[^@/?#]*)@")
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#]*)")


def resolve_setting(value: Any, *, field: str = "setting") -> str | None:
    """The value of a resource field that may still hold a ``dg.EnvVar``.

    Inside a run Dagster has already replaced an ``EnvVar`` by its value; a resource built by
    hand (a notebook, a CLI) still holds the ``EnvVar`` itself, which this reads.

    Args:
        value: A plain string, a ``dg.EnvVar``, or ``None``.
        field: The field's name, for the error message.

    Returns:
        The string, or ``None`` when ``value`` is ``None``.

    Raises:
        UserError: ``value`` is an ``EnvVar`` whose variable is not set.

    Examples:
        >>> import os
        >>> os.environ["LLM_ASSETS_DOC_VAR"] = "value"
        >>> resolve_setting(dg.EnvVar("LLM_ASSETS_DOC_VAR")), resolve_setting("plain")
        ('value', 'plain')
    """
    if value is None:
        return None
    if isinstance(value, dg.EnvVar):
        resolved = value.get_value()
        if resolved is None:
            raise UserError(
                f"environment variable {value.env_var_name} ({field}) is not set; export it "
                "before the run starts, or pass the value another way"
            )
        return resolved
    return str(value)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs.

    Examples:
        >>> mask_url("postgresql://app:s3cret@db:5432/llm")
        'postgresql://app:***@db:5432/llm'
        >>> mask_url("postgresql://db/llm?user=app&password=s3cret")
        'postgresql://db/llm?user=app&password=***'
    """
    url = _PASSWORD_IN_URL.sub(r"\g<head>:***@", url)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>***", url)


def scrub(text: str, url: str) -> str:
    """``text`` with every spelling of ``url``'s password removed (for driver errors).

    Examples:
        >>> scrub("auth failed for s3cret", "postgresql://app:s3cret@db/llm")
        'auth failed for ***'
    """
    passwords = {m.group("password") for m in _PASSWORD_IN_URL.finditer(url)}
    passwords |= {m.group("password") for m in _PASSWORD_IN_QUERY.finditer(url)}
    text = text.replace(url, mask_url(url))
    for password in passwords | {unquote(p) for p in passwords}:
        if password:
            text = text.replace(password, "***")
    return text


def postgres_dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg2://`` works too).

    Examples:
        >>> postgres_dsn("postgresql+psycopg2://u@db:5432/dagster")
        'postgresql://u@db:5432/dagster'
    """
    return re.sub(r"^postgres(ql)?(\+psycopg2)?://", "postgresql://", url)


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a PostgreSQL URL, without user or password, for messages.

    Examples:
        >>> describe_url("postgresql://app:s3cret@db.internal:5432/dagster")
        'db.internal:5432/dagster'
    """
    parsed = urlparse(postgres_dsn(url))
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 5432}{parsed.path}"


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, or ``.dagster_home`` in the working directory when it is unset.

    Files that belong next to the Dagster instance (the SQLite ledger, the SQLite rate-limit
    store) default to this folder.

    Examples:
        >>> isinstance(dagster_home(), Path)
        True
    """
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home")
