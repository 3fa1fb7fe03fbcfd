"""How a provider's failure is classified: row failure, step failure, or retry.

An HTTP error from the endpoint ends in one of three ways:

- a *step failure* (raised): 401/403 ``AuthenticationFailed``, 429 ``insufficient_quota``
  ``QuotaExhausted``, 404 ``ModelNotFound``; no retry can fix them, so the step stops at once;
- a *retry*: the transient statuses of ``TRANSIENT_STATUS`` (408, 409, 429, 5xx), waiting at
  least what ``parse_retry_after`` reads from the response;
- a *row failure* (a failed ``ChatResult``): anything else, such as 400 or 422, including
  ``context_length_exceeded``.

``error_code`` and ``error_message`` read the provider's error body; the circuit breaker and
the Batch API client use them too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import openai

from llm_assets.resources.errors import AuthenticationFailed, ModelNotFound, QuotaExhausted
from llm_assets.resources.llm.types import ChatRequest, ChatResult

TRANSIENT_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Reads ``retry-after-ms`` or ``retry-after`` (seconds) from response headers.

    Examples:
        >>> parse_retry_after({"retry-after": "1.5"})
        1.5
        >>> parse_retry_after({"retry-after-ms": "250"})
        0.25
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        with contextlib.suppress(ValueError):
            return max(0.0, float(value) * scale)
    return None


def error_code(exc: openai.APIStatusError) -> str | None:
    """The provider's error code (or type) from an error body, if it has one."""
    inner = _error_object(exc)
    code = inner.get("code") or inner.get("type") if inner else None
    return str(code) if code else None


def error_message(exc: openai.APIStatusError) -> str:
    """The provider's error message from an error body, else the exception's text."""
    inner = _error_object(exc)
    return str(inner["message"]) if inner and inner.get("message") else str(exc)


def _error_object(exc: openai.APIStatusError) -> Mapping[str, object] | None:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return inner
    return None


def classify_status(
    exc: openai.APIStatusError, request: ChatRequest, attempts: int, *, base_url: str
) -> ChatResult | None:
    """Returns a row failure, raises a step failure, or returns None for a retry.

    Args:
        exc: The failed attempt's error.
        request: The request it answered.
        attempts: Attempts made so far, this one included.
        base_url: The endpoint, for error messages.

    Raises:
        AuthenticationFailed: HTTP 401 or 403.
        QuotaExhausted: HTTP 429 with code ``insufficient_quota``.
        ModelNotFound: HTTP 404.
    """
    status = exc.status_code
    code = error_code(exc)
    headers = dict(exc.response.headers)
    if status in (401, 403):
        raise AuthenticationFailed(
            f"the LLM endpoint {base_url} rejected the API key (HTTP {status}"
            f"{', ' + code if code else ''}). Set a valid key in the environment variable "
            "that LLMResource.api_key reads (dg.EnvVar('OPENAI_API_KEY') by default) and "
            "check that it may use this model; nothing was retried.",
            status_code=status,
            code=code,
            headers=headers,
        )
    if status == 429 and code == "insufficient_quota":
        raise QuotaExhausted(
            f"the LLM endpoint {base_url} reports insufficient_quota: the account "
            "has no credit left. Add credit or raise the project's spend limit, then "
            "re-materialize; rows already answered are kept. Nothing was retried.",
            status_code=status,
            code=code,
            headers=headers,
        )
    if status == 404:
        model = request.body.get("model")
        raise ModelNotFound(
            f"the LLM endpoint {base_url} does not know model '{model}' (HTTP 404). "
            "Set `model` on the task or LLMResource to one the endpoint serves "
            "(GET /v1/models lists them).",
            status_code=status,
            code=code,
            headers=headers,
        )
    if status in TRANSIENT_STATUS:
        return None
    error_class = (
        "context_length_exceeded" if code == "context_length_exceeded" else ("bad_request")
    )
    return ChatResult(
        key=request.key,
        ok=False,
        attempts=attempts,
        error_class=error_class,
        error=f"HTTP {status} {code or ''}: {error_message(exc)}".strip(),
    )
