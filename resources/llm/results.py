"""The ``ChatResult`` of a request: an answer read from its body, or the reason it failed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llm_assets.resources.llm.pricing import PriceBook
from llm_assets.resources.llm.types import ChatRequest, ChatResult


def answered(
    request: ChatRequest,
    content: bytes,
    latency_s: float,
    attempts: int,
    prices: PriceBook,
) -> ChatResult:
    """The result of a 200 answer: its body, the model and usage it reports, and their cost.

    A body that is not JSON makes a failed result (``malformed_response``) that says so.

    Examples:
        >>> request = ChatRequest("k", {"model": "m", "messages": []}, 3)
        >>> body = b'{"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}'
        >>> result = answered(request, body, 0.2, 1, PriceBook())
        >>> result.ok, result.input_tokens, result.output_tokens
        (True, 3, 2)
        >>> usage = {"prompt_tokens": 2048, "completion_tokens": 9,
        ...          "prompt_tokens_details": {"cached_tokens": 1024}}
        >>> cached = answered(request, json.dumps({"usage": usage}).encode(), 0.2, 1, PriceBook())
        >>> cached.cached_input_tokens
        1024
        >>> answered(request, b"<html>", 0.2, 1, PriceBook()).error_class
        'malformed_response'
    """
    try:
        body = json.loads(content)
    except ValueError as exc:
        return ChatResult(
            key=request.key,
            ok=False,
            attempts=attempts,
            latency_s=latency_s,
            error_class="malformed_response",
            error=f"the endpoint answered 200 with a body that is not JSON: {exc}",
        )
    usage = body.get("usage") or {}
    input_tokens = int(usage.get("prompt_tokens") or 0)
    output_tokens = int(usage.get("completion_tokens") or 0)
    cached, reasoning = usage_details(body)
    model = str(body.get("model") or request.body.get("model") or "")
    return ChatResult(
        key=request.key,
        ok=True,
        body=body,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
        cost_usd=prices.cost(model, input_tokens, output_tokens, cached),
        cache_saving_usd=prices.cache_saving(model, input_tokens, output_tokens, cached),
        latency_s=latency_s,
        attempts=attempts,
    )


def usage_details(body: Mapping[str, Any] | None) -> tuple[int, int]:
    """The cached prompt tokens and the reasoning tokens a chat completion's ``usage`` reports.

    Examples:
        >>> usage_details({"usage": {"prompt_tokens_details": {"cached_tokens": 1152},
        ...                          "completion_tokens_details": {"reasoning_tokens": 64}}})
        (1152, 64)
        >>> usage_details(None)
        (0, 0)
    """
    usage = (body or {}).get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens")
    return int(cached or 0), int(reasoning or 0)


def retries_exhausted(request: ChatRequest, attempts: int, last: str) -> ChatResult:
    """The result of a request whose retries are used up; ``last`` names the last failure."""
    return ChatResult(
        key=request.key,
        ok=False,
        attempts=attempts,
        error_class="retries_exhausted",
        error=f"gave up after {attempts} attempts (last failure: {last})",
    )


def not_retried(request: ChatRequest, attempts: int, last_failure: object) -> ChatResult:
    """The result of a request left unsent (or not retried) once the circuit breaker opened."""
    return ChatResult(
        key=request.key,
        ok=False,
        attempts=attempts,
        error_class="endpoint_unreachable",
        error=(f"not retried after {attempts} attempts" if attempts else "not sent")
        + f": the circuit breaker opened (last failure: {last_failure})",
    )
