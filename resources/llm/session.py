"""One open connection to an endpoint: an ``AsyncOpenAI`` client on its own event loop.

``LLMResource`` opens a session in ``setup_for_execution`` and closes it in
``teardown_after_execution``, like Dagster's own integrations. The client lives on a private
event loop in a daemon thread, so it is reused by every call of the run (one connection pool),
works the same whether or not the caller already runs an event loop, and is closed on that
loop when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from llm_assets.resources.ratelimit import RateLimiter

T = TypeVar("T")


@dataclass(frozen=True)
class SessionSettings:
    """What a session needs, resolved once; ``api_key`` is never shown in its repr."""

    base_url: str
    api_key: str = field(repr=False)
    timeout_s: float
    limiter: RateLimiter


class ClientSession:
    """An ``AsyncOpenAI`` client with the SDK's retries off, on a private event loop.

    Args:
        settings: Endpoint, key, timeout and the limiter shared by the session's calls.

    Examples:
        >>> from llm_assets.resources.ratelimit import UnlimitedRateLimiter
        >>> settings = SessionSettings("http://127.0.0.1:1/v1", "k", 5.0, UnlimitedRateLimiter())
        >>> session = ClientSession(settings)
        >>> async def base_url(client): return str(client.base_url)
        >>> session.run(base_url)
        'http://127.0.0.1:1/v1/'
        >>> session.close()
    """

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llm-assets-client", daemon=True
        )
        self._thread.start()
        self._client = self._submit(self._open())
        self._closed = False

    async def _open(self) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=self.settings.base_url,
            api_key=self.settings.api_key,
            timeout=self.settings.timeout_s,
            max_retries=0,
        )
        # The HTTP pool imports anyio's asyncio backend on first use: up to a second or two
        # on a busy host. Do it while the session opens, not in the first request of a step,
        # where it delays learning the rate limit.
        with contextlib.suppress(ImportError):
            import anyio

            anyio.Event()
        return client

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def run(self, work: Callable[[openai.AsyncOpenAI], Coroutine[Any, Any, T]]) -> T:
        """Runs ``work(client)`` on the session's loop and returns its result.

        Raises:
            RuntimeError: The session is closed.
        """
        if self._closed:
            raise RuntimeError("this LLM client session is closed")
        future = asyncio.run_coroutine_threadsafe(work(self._client), self._loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted (e.g. the run was terminated): stop the work on the loop too.
            future.cancel()
            raise

    def close(self) -> None:
        """Closes the client's connections, then stops the loop and its thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
