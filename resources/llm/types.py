"""Plain data passed between the asset factory and the LLM engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion to send.

    Attributes:
        key: sha256 of the canonical request body; the ledger and dedup key.
        body: The JSON body of ``POST /chat/completions``, sent as it is.
        est_prompt_tokens: The local estimate of the prompt tokens.
    """

    key: str
    body: dict[str, Any]
    est_prompt_tokens: int

    @property
    def max_output_tokens(self) -> int:
        """The output cap the request sets (0 when it sets none)."""
        return int(self.body.get("max_completion_tokens") or self.body.get("max_tokens") or 0)


@dataclass(slots=True)
class ChatResult:
    """The outcome of one request after all of its attempts.

    Attributes:
        key: The request's key.
        ok: True when the endpoint answered 200.
        body: The decoded response body (``None`` when not ok).
        model: The model the endpoint reported (the requested one when it reported none).
        input_tokens: Reported prompt tokens, cached ones included.
        output_tokens: Reported completion tokens, reasoning ones included.
        cached_input_tokens: Prompt tokens the provider read from its prompt cache.
        reasoning_tokens: Completion tokens a reasoning model spent thinking.
        cost_usd: Cost from the price table, cached input at its cached price.
        cache_saving_usd: What the provider's prompt cache took off ``cost_usd``.
        latency_s: Wall time of the successful attempt.
        attempts: How many HTTP attempts were made.
        error_class: A short machine-readable class for a failure
            (``context_length_exceeded``, ``bad_request``, ``retries_exhausted``...).
        error: A human-readable reason for a failure.
    """

    key: str
    ok: bool
    body: dict[str, Any] | None = None
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cache_saving_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    error_class: str | None = None
    error: str | None = None


@dataclass(slots=True)
class EngineStats:
    """Running totals of one engine run, read by progress reporting and metadata."""

    total: int = 0
    done: int = 0
    ok: int = 0
    failed: int = 0
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    started_at: float = 0.0
    error_classes: dict[str, int] = field(default_factory=dict)

    def count(self, result: ChatResult) -> None:
        """Adds one finished request to the totals."""
        self.done += 1
        self.attempts += result.attempts
        self.retries += max(0, result.attempts - 1)
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost_usd += result.cost_usd
        if result.ok:
            self.ok += 1
        else:
            self.failed += 1
            name = result.error_class or "error"
            self.error_classes[name] = self.error_classes.get(name, 0) + 1
