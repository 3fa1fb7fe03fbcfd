"""How a failed Batch API call is reported: the project's typed errors, never the key.

``AuthenticationFailed`` (401/403), ``QuotaExhausted`` (429 ``insufficient_quota``),
``EndpointUnreachable`` (connection refused, DNS, TLS, timeout after the SDK's retries) and
``ProviderError`` for any other refusal; each message names the endpoint, what was being done,
the batches already created, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import openai

from llm_assets.resources.errors import (
    AuthenticationFailed,
    EndpointUnreachable,
    ProviderError,
    QuotaExhausted,
)
from llm_assets.resources.llm.breaker import systemic_failure
from llm_assets.resources.llm.failures import error_code, error_message
from llm_assets.resources.settings import mask_url


def provider_error(
    exc: openai.APIError,
    *,
    base_url: str,
    action: str,
    created: Sequence[str] = (),
    retries: int = 0,
    secret: str | None = None,
) -> ProviderError:
    """The project's error for a failed SDK call.

    Args:
        exc: What the SDK raised.
        base_url: The endpoint; a password in it is masked.
        action: What was being done, e.g. ``"reading batch batch_abc"``.
        created: Ids of batches created by the same submission before the failure.
        retries: How many times the SDK retried before giving up.
        secret: A string never to show (the API key), masked if some text echoes it.

    Examples:
        >>> sdk = openai.OpenAI(base_url="http://127.0.0.1:1/v1", api_key="sk-x", max_retries=0)
        >>> try:
        ...     sdk.batches.retrieve("batch_1")
        ... except openai.APIError as exc:
        ...     error = provider_error(exc, base_url=str(sdk.base_url), action="reading batch_1")
        >>> type(error).__name__, error.code
        ('EndpointUnreachable', 'connection refused')
    """
    where = f"the Batch API at {mask_url(base_url)}"
    done = f"; {len(created)} batch(es) were created before this ({', '.join(created)})"
    done = done if created else ""
    kind: type[ProviderError] = EndpointUnreachable
    details: dict[str, Any] = {}
    if isinstance(exc, openai.APIStatusError):
        status, code = exc.status_code, error_code(exc)
        details = {"status_code": status, "code": code, "body": exc.body}
        details["headers"] = dict(exc.response.headers)
        if status in (401, 403):
            kind = AuthenticationFailed
            message = (
                f"{where} rejected the API key while {action} (HTTP {status}"
                f"{', ' + code if code else ''}){done}. Set a valid key in the environment "
                "variable LLMResource.api_key reads (dg.EnvVar('OPENAI_API_KEY') by default) "
                "and check that it may use the Batch API."
            )
        elif status == 429 and code == "insufficient_quota":
            kind = QuotaExhausted
            message = (
                f"{where} reports insufficient_quota while {action}: the account has no credit "
                f"left{done}. Add credit or raise the project's spend limit, then materialize "
                "again; requests already answered are kept in the ledger."
            )
        else:
            kind = ProviderError
            message = (
                f"{where} answered HTTP {status}{' ' + code if code else ''} while {action}: "
                f"{error_message(exc)}{done}"
            )
    else:
        failure = systemic_failure(exc)
        details = {"code": failure.kind if failure else "connection failed"}
        message = (
            f"{where} cannot be reached while {action}: {failure or exc} (after {retries} "
            f"retries){done}. Check LLMResource.base_url and that the server is up and "
            "reachable from this machine, then materialize again."
        )
    if secret and len(secret) >= 8:  # a short "key" would mask ordinary words
        message = message.replace(secret, "***")
    return kind(message, **details)
