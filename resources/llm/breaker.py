"""The circuit breaker: stop a step when the endpoint is down, not when one row is bad.

A *systemic* failed attempt is one that says nothing about the request and everything about
the endpoint: a connection error (refused, DNS, TLS, dropped) or timeout
(``openai.APIConnectionError``, which includes ``APITimeoutError``), or HTTP 500, 502, 503 or
504. Other answers are not counted: 429 belongs to the rate limiter, 408 and 409 are about one
request (the server did answer), and 400/422/context length/invalid schema are row failures.
None of those resets the count either; only a success does.

The rule, over all of a step's workers:

- every systemic failed attempt adds one to the count, and a success resets it to zero;
- the breaker opens when the count reaches ``threshold`` *and* the endpoint has been failing
  for as long as one request may keep retrying: the streak spans ``min_failing_s`` (one
  request's whole backoff schedule, before jitter shortens it), or a request already used up
  its retries on systemic failures since the last success. A blip shorter than a retry
  schedule (a server restart) therefore never opens it, and the backoff bounds how early it
  can open: with the defaults (0.5 s doubling up to 30 s, 6 retries) after about 16-32 s of
  failures, rather than after every row has used up every retry;
- a step too small to reach the threshold (say one request, 7 attempts, threshold 8) fails
  the same way when *every* request it finished gave up on systemic failures and none
  succeeded (``gave_up_on_everything``).

Why time and not only "a request gave up": while no answer at all has arrived, the rate
limiter lets about one probe a second through, so with many workers the attempts of any one
request are spread far apart; a dead endpoint would take ``concurrency`` times longer to show.

Once open, no new request and no new retry attempt starts, and workers sleeping in a backoff
wake at once; attempts already in flight finish and are reported (a success is still paid for
and recorded). The engine then raises ``EndpointUnreachable`` naming the endpoint and the root
cause, found by walking the SDK exception's ``__cause__`` chain down to the httpx/OS error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from llm_assets.resources.errors import EndpointUnreachable
from llm_assets.resources.llm.failures import error_code, error_message

SYSTEMIC_STATUS = frozenset({500, 502, 503, 504})

_ADVICE = {
    "connection refused": "Check that the server is running and LLMResource.base_url is right",
    "DNS name not resolved": "Check the host name in LLMResource.base_url and this machine's DNS",
    "TLS handshake failed": "Check the scheme (http or https) and the certificate of "
    "LLMResource.base_url",
    "timeout": "Check that the server is up and not overloaded, or raise LLMResource.timeout_s",
}
_DEFAULT_ADVICE = "Check that the server is running and LLMResource.base_url is right"
_HTTP_ADVICE = "The server answers but fails every request: check its logs and health"


@dataclass(frozen=True, slots=True)
class SystemicFailure:
    """Why one attempt failed in a way that points at the endpoint rather than the request.

    Attributes:
        kind: ``connection refused``, ``DNS name not resolved``, ``TLS handshake failed``,
            ``timeout``, ``connection dropped``, ``connection failed`` or ``HTTP <status>``.
        detail: The root cause's type and text, e.g. ``ConnectError: [Errno 111] ...``.
        status_code: The HTTP status of a 5xx, ``None`` for a connection-level failure.
    """

    kind: str
    detail: str
    status_code: int | None = None

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


def systemic_failure(exc: BaseException) -> SystemicFailure | None:
    """Classifies a failed attempt; ``None`` when it is not systemic.

    Examples:
        >>> systemic_failure(ValueError("not from the SDK")) is None
        True
    """
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code not in SYSTEMIC_STATUS:
            return None
        code = error_code(exc)
        detail = f"{code}: {error_message(exc)}" if code else error_message(exc)
        return SystemicFailure(f"HTTP {exc.status_code}", detail, exc.status_code)
    if not isinstance(exc, openai.APIConnectionError):
        return None
    chain = _cause_chain(exc)
    transport = next((e for e in chain if not isinstance(e, openai.OpenAIError)), exc)
    root = chain[-1]
    text = str(root) or str(transport)
    detail = f"{type(transport).__name__}: {text}" if text else type(transport).__name__
    return SystemicFailure(_connection_kind(exc, chain), detail)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first, without the cancellations of a timeout."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        if not isinstance(current, asyncio.CancelledError):
            chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _connection_kind(exc: BaseException, chain: list[BaseException]) -> str:
    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if has(ssl.SSLError, ssl.CertificateError):
        return "TLS handshake failed"
    if has(socket.gaierror):
        return "DNS name not resolved"
    if has(ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, openai.APITimeoutError) or has(TimeoutError):
        return "timeout"
    if has(ConnectionResetError, BrokenPipeError) or any(
        type(e).__name__ == "RemoteProtocolError" for e in chain
    ):
        return "connection dropped"
    return "connection failed"


class CircuitBreaker:
    """Counts systemic failed attempts of one engine run and decides when to stop.

    Lives on the engine's event loop; only that loop's tasks call it, so it needs no lock.

    Args:
        threshold: Systemic failed attempts in a row (since the last success) needed to open.
        min_failing_s: How long the streak must have lasted unless a request already gave up.

    Examples:
        >>> breaker = CircuitBreaker(threshold=2, min_failing_s=60.0)
        >>> refused = SystemicFailure("connection refused", "ConnectError: refused")
        >>> breaker.record_failure(refused); breaker.record_failure(refused); breaker.is_open
        False
        >>> breaker.record_exhausted(refused); breaker.is_open
        True
    """

    def __init__(self, threshold: int, *, min_failing_s: float = 0.0) -> None:
        self.threshold = max(1, threshold)
        self.min_failing_s = min_failing_s
        self.in_a_row = 0
        self.successes = 0
        self.gave_up = 0
        self._gave_up_since_success = 0
        self._failing_since = self._last_failure_at = 0.0
        self._kinds: Counter[str] = Counter()
        self._last: SystemicFailure | None = None
        self._open = False
        self._streak_at_open: tuple[int, float, Counter[str], int] | None = None
        self._waiting: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()

    @property
    def is_open(self) -> bool:
        """True once the breaker opened; it stays open for the rest of the run."""
        return self._open

    @property
    def last_failure(self) -> SystemicFailure | None:
        """The latest systemic failure."""
        return self._last

    def record_success(self) -> None:
        """An attempt succeeded: the endpoint works, so the count starts again."""
        self.successes += 1
        self.in_a_row = 0
        self._gave_up_since_success = 0
        self._kinds.clear()

    def record_failure(self, failure: SystemicFailure) -> None:
        """One attempt failed systemically."""
        self._last_failure_at = time.monotonic()
        if self.in_a_row == 0:
            self._failing_since = self._last_failure_at
        self.in_a_row += 1
        self._kinds[failure.kind] += 1
        self._last = failure
        self._maybe_open()

    def record_exhausted(self, failure: SystemicFailure) -> None:
        """A request used up its retries, the last one failing with ``failure``."""
        self.gave_up += 1
        self._gave_up_since_success += 1
        self._last = failure
        self._maybe_open()

    def gave_up_on_everything(self, finished: int) -> bool:
        """True when ``finished`` requests all gave up on systemic failures and none succeeded."""
        return finished > 0 and self.successes == 0 and self.gave_up == finished

    def _maybe_open(self) -> None:
        if self._open or self.in_a_row < self.threshold:
            return
        failing_s = self._last_failure_at - self._failing_since
        if self._gave_up_since_success > 0 or failing_s >= self.min_failing_s:
            self._open = True
            # Attempts still in flight may succeed and reset the count; the error reports this.
            self._streak_at_open = self._streak()
            for task in self._waiting:
                self._interrupted.add(task)
                task.cancel()

    def _streak(self) -> tuple[int, float, Counter[str], int]:
        failing_s = self._last_failure_at - self._failing_since
        return self.in_a_row, failing_s, Counter(self._kinds), self.successes

    async def unless_open(self, work: Coroutine[Any, Any, None]) -> bool:
        """Awaits ``work`` (a backoff or the rate limiter's wait) unless the breaker opens.

        Returns:
            True when ``work`` finished with the breaker still closed; False when the breaker
            is open, in which case ``work`` was cut short.
        """
        if self._open:
            work.close()
            return False
        # Opening cancels the waiting tasks, as ``asyncio.timeout`` does: nothing to pay while
        # the endpoint is healthy, unlike racing every wait against an event in a new task.
        task = asyncio.current_task()
        assert task is not None
        self._waiting.add(task)
        try:
            await work
        except asyncio.CancelledError:
            if task not in self._interrupted or task.uncancel() > 0:
                raise  # cancelled by someone else (the run is stopping), not by the breaker
        else:
            if task in self._interrupted:
                task.uncancel()  # ``work`` swallowed the breaker's cancellation
        finally:
            self._waiting.discard(task)
            self._interrupted.discard(task)
        return not self._open

    def error(self, base_url: str, *, paid: int, secret: str | None = None) -> EndpointUnreachable:
        """The step's error: endpoint, root cause, how many attempts failed, what to do.

        Args:
            base_url: The endpoint; a password in it is masked.
            paid: Responses that succeeded before the breaker stopped the run.
            secret: A string never to show (the API key), masked if some text echoes it.
        """
        last = self._last or SystemicFailure("connection failed", "")
        verb = "fails every request" if last.status_code else "cannot be reached"
        in_a_row, failing_s, kinds, successes = self._streak_at_open or self._streak()
        mix = ""
        if len(kinds) > 1:
            mix = " (" + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) + ")"
        history = "none succeeded"
        if successes:
            history = f"none succeeded since the last of {successes} successes"
        advice = _HTTP_ADVICE if last.status_code else _ADVICE.get(last.kind, _DEFAULT_ADVICE)
        kept = (
            f"{paid} responses paid before this are in the ledger, re-materialize to pay only "
            "for the rest"
            if paid
            else "no response was paid for; re-materialize once the endpoint answers"
        )
        message = (
            f"the LLM endpoint {_masked_url(base_url)} {verb}: {last}; {in_a_row} "
            f"attempts in a row failed{mix} over {failing_s:.0f} s and {history}. "
            f"{advice}; {kept}."
        )
        if secret and len(secret) >= 8:  # a short "key" would mask ordinary words
            message = message.replace(secret, "***")
        return EndpointUnreachable(message, status_code=last.status_code, code=last.kind)


def _masked_url(url: str) -> str:
    """``url`` without a password in its user-info part.

    Examples:
        >>> _masked_url("https://user:pw@llm.example/v1")
        'https://user:***@llm.example/v1'
    """
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
