"""The offline guard: while ``LLM_ASSETS_OFFLINE`` is set, only this machine may be called.

The chat client, the Batch API client and object storage all ask it before opening a
connection, so a test suite or a demo can never reach a paid endpoint by mistake.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from llm_assets.resources.errors import UserError

OFFLINE_ENV = "LLM_ASSETS_OFFLINE"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(url: str) -> bool:
    """True when ``url`` points at this machine.

    Examples:
        >>> is_loopback("http://127.0.0.1:8765/v1"), is_loopback("https://api.openai.com/v1")
        (True, False)
    """
    host = (urlparse(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def check_offline_guard(base_url: str) -> None:
    """Refuses a non-loopback endpoint while ``LLM_ASSETS_OFFLINE`` is set.

    Raises:
        UserError: The guard is on and ``base_url`` is not on this machine.
    """
    if os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes") and not is_loopback(
        base_url
    ):
        raise UserError(
            f"{OFFLINE_ENV} is set, so requests may only go to this machine, but "
            f"LLMResource.base_url is {base_url!r}. Point base_url at the simulator "
            f"(python -m llm_assets.simulator) or unset {OFFLINE_ENV} to call a real endpoint."
        )
