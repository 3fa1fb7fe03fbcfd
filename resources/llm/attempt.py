"""One attempt of one row: send it, then say what comes of it, a result or a retry's pause.

The SDK's own retries are off (``max_retries=0``), so this is the one layer that reads a
failure: a permanent one (``failures.classify_status``) ends the step by raising, a 429 goes to
the rate limiter and waits its ``retry-after``, any other transient failure counts towards the
row's retries and, when systemic (``breaker``), towards the circuit breaker; ``retries`` says
how long the row waits. An answer teaches the rate limiter from its headers and usage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import openai
from httpx2 import Response as HTTPResponse  # the HTTP library under openai 3

from llm_assets.resources.llm.breaker import CircuitBreaker, SystemicFailure, systemic_failure
from llm_assets.resources.llm.failures import classify_status, parse_retry_after
from llm_assets.resources.llm.pricing import PriceBook
from llm_assets.resources.llm.results import answered, retries_exhausted
from llm_assets.resources.llm.retries import RetryPolicy
from llm_assets.resources.llm.types import ChatRequest, ChatResult, EngineStats
from llm_assets.resources.ratelimit import RateLimiter


@dataclass(slots=True)
class Row:
    """One request on its way: how often it was tried and why it failed."""

    request: ChatRequest
    est_tokens: int
    attempts: int = 0
    transient_failures: int = 0
    rate_limited: int = 0


@dataclass(slots=True)
class Attempts:
    """Sends the attempts of one engine run, sharing its stats, breaker and retry policy.

    Args:
        client: An ``openai.AsyncOpenAI`` with ``max_retries=0``.
        base_url: The endpoint, for error messages.
        limiter: Rate limiter told about every answer and every 429.
        prices: What each call costs.
        max_retries: Retries of a transient failure.
        max_rate_limit_retries: Retries of a 429.
        stats: The run's stats; 429s are counted here.
        breaker: The run's circuit breaker.
        retries: The run's retry policy.
    """

    client: openai.AsyncOpenAI
    base_url: str
    limiter: RateLimiter
    prices: PriceBook
    max_retries: int
    max_rate_limit_retries: int
    stats: EngineStats
    breaker: CircuitBreaker
    retries: RetryPolicy

    async def send(self, row: Row) -> ChatResult | float:
        """Sends one attempt; returns the row's result, or how long to wait before a retry.

        Raises:
            ProviderError: A failure no retry can fix.
        """
        request, est_tokens = row.request, row.est_tokens
        row.attempts += 1
        attempts = row.attempts
        started = time.monotonic()
        try:
            # ``post`` sends the body as built (``create`` would walk it again to transform
            # typed parameters we never use): about a fifth of the SDK's time per request.
            raw = await self.client.post(
                "/chat/completions", body=request.body, cast_to=HTTPResponse
            )
        except openai.APIStatusError as exc:
            headers = dict(exc.response.headers)
            self.limiter.observe(headers, used_tokens=est_tokens, est_tokens=est_tokens)
            failure = classify_status(exc, request, attempts, base_url=self.base_url)
            if failure is not None:
                return failure
            retry_after = parse_retry_after(headers)
            if exc.status_code == 429:
                row.rate_limited += 1
                self.stats.rate_limited += 1
                self.limiter.on_rate_limited(retry_after)
                if row.rate_limited > self.max_rate_limit_retries:
                    return self._exhausted(request, attempts, f"429 x{row.rate_limited}", None)
                return self.retries.after_rate_limit(row.rate_limited, retry_after)
            row.transient_failures += 1
            self.retries.record(ok=False)
            systemic = self._record(exc)
            if row.transient_failures > self.max_retries:
                return self._exhausted(request, attempts, f"HTTP {exc.status_code}", systemic)
            return self.retries.after_failure(row.transient_failures, retry_after)
        except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
            row.transient_failures += 1
            self.retries.record(ok=False)
            systemic = self._record(exc)
            if row.transient_failures > self.max_retries:
                last = str(systemic) if systemic else type(exc).__name__
                return self._exhausted(request, attempts, last, systemic)
            return self.retries.after_failure(row.transient_failures, None)
        self.breaker.record_success()
        self.retries.record(ok=True)
        result = answered(request, raw.content, time.monotonic() - started, attempts, self.prices)
        if result.ok:
            self.limiter.observe(
                raw.headers,
                used_tokens=result.input_tokens + result.output_tokens,
                est_tokens=est_tokens,
            )
        return result

    def _record(self, exc: openai.APIError) -> SystemicFailure | None:
        failure = systemic_failure(exc)
        if failure is not None:
            self.breaker.record_failure(failure)
        return failure

    def _exhausted(
        self, request: ChatRequest, attempts: int, last: str, systemic: SystemicFailure | None
    ) -> ChatResult:
        if systemic is not None:
            self.breaker.record_exhausted(systemic)
        return retries_exhausted(request, attempts, last)
