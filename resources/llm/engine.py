"""The async engine that sends many chat requests: concurrency, one retry layer, rate limits.

The SDK's own retries are off (``max_retries=0``) so that exactly one layer decides what is
retried, how long to wait and what counts against the rate limit. Transient failures (408,
409, 429, 5xx, connection errors, timeouts) are retried; permanent failures end the row (400,
422) or the whole step (401, 403, 404, ``insufficient_quota``): nothing new is sent, requests
in flight finish and are reported (an answer already paid is never dropped), then ``run()``
raises, so a bad key never becomes a retry storm; ``failures`` sorts them. How long a retry
waits is ``retries``'s decision: an isolated failure is retried as soon as the rate limiter
allows, after a short jittered pause; only overload (most recent attempts failing,
``retry-after``, 429s) backs off, and then new rows wait too.

``concurrency`` senders share the rows: a sender whose answer is in takes the next row (a
retry whose pause is over comes before a new row), waits for the rate limiter's turn, and
sends it on the connection that answer just freed. Only one sender at a time waits for the
limiter, so a retry is never queued behind reservations made for rows that have not gone yet;
a row waiting for its retry holds neither a sender nor an HTTP connection.

A dead or failing endpoint stops the step with one ``EndpointUnreachable`` naming the endpoint
and the root cause, instead of failing every row after every retry. The circuit breaker
(``breaker``, which spells out the rule) opens after ``breaker_threshold`` systemic failed
attempts in a row (connection, DNS, TLS, timeout, 500/502/503/504) across all attempts, once
they have lasted one request's whole backoff schedule; then nothing new is sent, attempts in
flight finish and are reported (a success is still recorded), and ``run()`` raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Iterable

import openai

from llm_assets.resources.errors import ProviderError
from llm_assets.resources.llm.attempt import Attempts, Row
from llm_assets.resources.llm.breaker import CircuitBreaker
from llm_assets.resources.llm.pricing import PriceBook
from llm_assets.resources.llm.results import not_retried
from llm_assets.resources.llm.retries import RetryPolicy
from llm_assets.resources.llm.types import ChatRequest, ChatResult, EngineStats
from llm_assets.resources.ratelimit import RateLimiter, UnlimitedRateLimiter

ResultCallback = Callable[[ChatResult], None]
ProgressCallback = Callable[[EngineStats, int], None]


class ChatEngine:
    """Sends chat requests concurrently through one AsyncOpenAI client.

    Args:
        client: An ``openai.AsyncOpenAI`` with ``max_retries=0``.
        base_url: The endpoint, for error messages.
        concurrency: Requests in flight at once (rows waiting for a retry do not count).
        max_retries: Retries of a transient failure (429s have their own, larger cap).
        backoff_s: First backoff under overload; doubles each retry.
        backoff_max_s: Backoff cap.
        prices: What each call costs (the provider's list prices and overrides).
        limiter: Rate limiter consulted before every attempt.
        seed: Seed of the jitter RNG (``None`` for system entropy).
        breaker_threshold: Systemic failed attempts in a row that open the circuit breaker
            (see the module docstring).

    Examples:
        >>> import asyncio, openai
        >>> engine = ChatEngine(openai.AsyncOpenAI(api_key="k", max_retries=0), base_url="x")
        >>> engine.stats.done
        0
    """

    max_rate_limit_retries = 50

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        base_url: str,
        concurrency: int = 16,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        prices: PriceBook | None = None,
        limiter: RateLimiter | None = None,
        seed: int | None = None,
        breaker_threshold: int = 8,
    ) -> None:
        self._client = client
        self._base_url = base_url
        self._concurrency = max(1, concurrency)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._prices = prices or PriceBook()
        self._limiter = limiter or UnlimitedRateLimiter()
        self._rng = random.Random(seed)
        self._retries = RetryPolicy(backoff_s, backoff_max_s, self._rng)
        self.stats = EngineStats()
        self._breaker_threshold = max(1, breaker_threshold)
        self._breaker = self._new_breaker()

    async def run(
        self,
        requests: Iterable[ChatRequest],
        on_result: ResultCallback,
        *,
        should_stop: Callable[[], bool] | None = None,
        progress: ProgressCallback | None = None,
        progress_interval_s: float = 5.0,
    ) -> EngineStats:
        """Sends every request and calls ``on_result`` once per request as it completes.

        Args:
            requests: The requests; taken one at a time as senders free up.
            on_result: Called in the event loop thread for each finished request.
            should_stop: Checked before each new request; when it returns True no new request
                starts (requests in flight finish and are reported).
            progress: Called every ``progress_interval_s`` with the stats and current
                concurrency.
            progress_interval_s: Seconds between progress calls.

        Returns:
            The run's stats.

        Raises:
            ProviderError: A failure that no retry can fix (bad key, no quota, unknown model);
                the requests in flight when it came were finished and reported first.
            EndpointUnreachable: The circuit breaker opened (a ``ProviderError`` too); every
                success before it was reported through ``on_result``.
        """
        pending = list(requests)
        self.stats = EngineStats(total=len(pending), started_at=time.monotonic())
        self._breaker = breaker = self._new_breaker()
        self._retries = RetryPolicy(self._backoff_s, self._backoff_max_s, self._rng)
        attempts = Attempts(
            self._client,
            self._base_url,
            self._limiter,
            self._prices,
            self._max_retries,
            self.max_rate_limit_retries,
            self.stats,
            breaker,
            self._retries,
        )
        fresh = iter(pending)
        ready: deque[Row] = deque()  # retries whose pause is over
        wake = asyncio.Event()
        turn = asyncio.Lock()  # one row at a time waits for the rate limiter
        held: Row | None = None  # a new row taken while an overload hold was on
        unfinished = 0  # rows taken and not yet reported
        fatal: list[ProviderError] = []  # a failure no retry can fix ends the step
        sleeping: set[asyncio.Task[None] | None] = set()  # retries waiting out their pause

        def finish(result: ChatResult) -> None:
            nonlocal unfinished
            unfinished -= 1
            self.stats.count(result)
            on_result(result)
            wake.set()

        def give_up(failure: ProviderError) -> None:
            """Ends the step: requests in flight finish and are reported, nothing new goes."""
            nonlocal unfinished
            unfinished -= 1  # the failed row: the error reports it
            if not fatal:
                fatal.append(failure)
            unfinished -= len(sleeping)  # retries not sent: their rows end with the step
            for task in sleeping:
                if task is not None:
                    task.cancel()
            sleeping.clear()
            wake.set()

        async def retry_later(row: Row, pause_s: float) -> None:
            try:
                retry = await breaker.unless_open(asyncio.sleep(pause_s))
            except asyncio.CancelledError:
                if fatal:
                    return  # ``give_up`` ended this row
                raise
            sleeping.remove(asyncio.current_task())
            if retry:
                ready.append(row)
                wake.set()
            else:
                finish(self._not_retried(row.request, row.attempts))

        async def next_row() -> Row | None:
            """The next row to send, once the limiter allows it; None when all are done."""
            nonlocal unfinished, held
            async with turn:
                while True:
                    stopping = (
                        bool(fatal)
                        or breaker.is_open
                        or (should_stop is not None and should_stop())
                    )
                    if stopping and held:  # taken during a hold, never sent: as if never taken
                        unfinished -= 1
                        held = None
                    if fatal and ready:  # retries are not sent once the step is ending
                        unfinished -= len(ready)
                        ready.clear()
                    row = ready.popleft() if ready else None
                    if row is None and held and not stopping:
                        row, held = held, None
                    elif row is None and not stopping:
                        request = next(fresh, None)
                        if request is not None:
                            unfinished += 1
                            est = request.est_prompt_tokens + request.max_output_tokens
                            row = Row(request, est)
                    if row is None:
                        if unfinished == 0:
                            return None
                        wake.clear()
                        await wake.wait()
                        continue
                    hold = self._retries.hold_until - time.monotonic()
                    if hold > 0 and row.attempts == 0:
                        # Overload: no new row starts before the hold ends, but a retry whose
                        # pause is over still goes; the first to succeed shows the endpoint back.
                        held = row
                        wake.clear()
                        await breaker.unless_open(_wait(wake, hold))
                        continue
                    if not await breaker.unless_open(self._limiter.acquire(row.est_tokens)):
                        finish(self._not_retried(row.request, row.attempts))
                    elif fatal:  # the step ended while this row waited for its turn
                        unfinished -= 1
                    else:
                        return row

        async def sender(group: asyncio.TaskGroup) -> None:
            # One of ``concurrency`` senders: each sends its next row as soon as its last
            # answer is in, on the connection that answer just freed.
            while (row := await next_row()) is not None:
                try:
                    outcome = await attempts.send(row)
                except ProviderError as failure:
                    give_up(failure)
                    return
                if isinstance(outcome, ChatResult):
                    finish(outcome)
                else:
                    sleeping.add(group.create_task(retry_later(row, outcome)))

        reporter = None
        if progress is not None:
            reporter = asyncio.create_task(self._report(progress, progress_interval_s))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._concurrency, len(pending))):
                    group.create_task(sender(group))
        except* ProviderError as failures:
            raise failures.exceptions[0] from None
        finally:
            if reporter is not None:
                reporter.cancel()
        if progress is not None:
            progress(self.stats, self._concurrency)
        if fatal:
            raise fatal[0]
        if breaker.is_open or breaker.gave_up_on_everything(self.stats.done):
            raise breaker.error(self._base_url, paid=self.stats.ok, secret=self._client.api_key)
        return self.stats

    def _new_breaker(self) -> CircuitBreaker:
        # How long one request may keep retrying: its backoffs before jitter shortens them.
        backoffs = (
            min(self._backoff_max_s, self._backoff_s * 2**i) for i in range(self._max_retries)
        )
        return CircuitBreaker(self._breaker_threshold, min_failing_s=sum(backoffs))

    async def _report(self, progress: ProgressCallback, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            progress(self.stats, self._concurrency)

    def _not_retried(self, request: ChatRequest, attempts: int) -> ChatResult:
        return not_retried(request, attempts, self._breaker.last_failure)


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Waits until ``event`` is set or ``timeout_s`` has passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)
