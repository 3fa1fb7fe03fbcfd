"""OpenAI-shaped error bodies and API-key masking."""

from __future__ import annotations

from typing import Any


def mask_key(key: str) -> str:
    """Mask an API key the way OpenAI does in error messages, so it is never shown whole.

    Args:
        key: The bearer token as received.

    Returns:
        The first five and last three characters around ``****`` for long keys, fewer
        characters for short ones.

    Examples:
        >>> mask_key("sk-abcdefghijklmnopxyz")
        'sk-ab****xyz'
        >>> mask_key("short")
        '****rt'
    """
    if len(key) >= 12:
        return f"{key[:5]}****{key[-3:]}"
    if len(key) > 4:
        return f"****{key[-2:]}"
    return "****"


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Build the JSON body OpenAI returns with every 4xx/5xx.

    Args:
        message: Human-readable explanation.
        error_type: OpenAI's ``type`` field, e.g. ``invalid_request_error``.
        code: OpenAI's machine-readable ``code``, e.g. ``rate_limit_exceeded``.
        param: The request parameter at fault, if any.

    Returns:
        ``{"error": {"message", "type", "param", "code"}}``.
    """
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def invalid_api_key(key: str | None) -> dict[str, Any]:
    """Body of a 401 for a missing or unknown key; the key is masked."""
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    else:
        message = (
            f"Incorrect API key provided: {mask_key(key)}. This is the llm-assets simulator; "
            "use one of the keys it was started with (knob `api_keys`)."
        )
    return error_body(message, "invalid_request_error", code="invalid_api_key")


def insufficient_quota() -> dict[str, Any]:
    """Body of the 429 an account without credit receives."""
    return error_body(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        code="insufficient_quota",
    )


def server_error(status: int) -> dict[str, Any]:
    """Body of an injected 500 or 503."""
    if status == 503:
        message = "The server is overloaded or not ready yet."
    else:
        message = "The server had an error while processing your request. Sorry about that!"
    return error_body(message, "server_error")


def context_length_exceeded(limit: int, prompt_tokens: int, max_tokens: int) -> dict[str, Any]:
    """Body of the 400 for a prompt (plus requested completion) over the context window."""
    if max_tokens:
        detail = (
            f"However, you requested {prompt_tokens + max_tokens} tokens "
            f"({prompt_tokens} in the messages, {max_tokens} in the completion)."
        )
    else:
        detail = f"However, your messages resulted in {prompt_tokens} tokens."
    return error_body(
        f"This model's maximum context length is {limit} tokens. {detail} "
        "Please reduce the length of the messages or completion.",
        "invalid_request_error",
        code="context_length_exceeded",
        param="messages",
    )


def rate_limit_exceeded(
    kind: str, model: str, limit: int, used: int, requested: int, retry_after: str | None
) -> dict[str, Any]:
    """Body of a 429 for a request over the RPM (``kind="requests"``) or TPM window.

    Args:
        kind: ``requests`` or ``tokens``; becomes the error ``type`` like OpenAI's.
        model: Model named in the request.
        limit: The configured limit per window.
        used: Requests or tokens already in the window.
        requested: What this request asked for (1 request, or its token cost).
        retry_after: Formatted wait, or None when the request can never fit.

    Returns:
        ``{"error": {...}}`` with code ``rate_limit_exceeded``.
    """
    label = "requests per window (RPM)" if kind == "requests" else "tokens per window (TPM)"
    if retry_after is None:
        message = (
            f"Request too large for {model} on {label}: Limit {limit}, Requested {requested}. "
            "The input or output tokens must be reduced in order to run successfully."
        )
    else:
        message = (
            f"Rate limit reached for {kind} for {model} on {label}: Limit {limit}, "
            f"Used {used}, Requested {requested}. Please try again in {retry_after}."
        )
    return error_body(message, kind, code="rate_limit_exceeded")


def invalid_request(
    message: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Body of a 400 (or 404 for an unknown model) for a request the provider refuses."""
    return error_body(message, "invalid_request_error", code=code, param=param)
