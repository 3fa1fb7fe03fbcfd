"""``LLMResource``: how llm-assets talks to any OpenAI-compatible endpoint."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import dagster as dg
import openai
from pydantic import PrivateAttr

# The module, not the class: the batch client builds on this family's inner modules (chat types,
# failures, the offline guard), so either family may be imported first.
from llm_assets.resources.batch import client as batch_api
from llm_assets.resources.errors import UserError
from llm_assets.resources.llm.config import LLMResourceConfig
from llm_assets.resources.llm.engine import ChatEngine, ProgressCallback, ResultCallback
from llm_assets.resources.llm.offline import check_offline_guard, is_loopback
from llm_assets.resources.llm.session import ClientSession, SessionSettings
from llm_assets.resources.llm.types import ChatRequest, EngineStats
from llm_assets.resources.ratelimit import (
    AdaptiveRateLimiter,
    RateLimiter,
    limit_key,
    open_rate_limit_store,
)
from llm_assets.resources.settings import POSTGRES_URL_ENV_VAR, resolve_setting


class LLMResource(LLMResourceConfig):
    """An OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, llama.cpp, or the simulator.

    Usage is read from each response, never by wrapping the client, so every call is counted
    exactly once. Retries live in one layer (see ``engine``); the SDK's are off.

    Examples:
        .. code-block:: python

            import dagster as dg
            from llm_assets.resources import LLMResource

            defs = dg.Definitions(
                resources={
                    "llm": LLMResource(
                        base_url="https://api.openai.com/v1",
                        api_key=dg.EnvVar("OPENAI_API_KEY"),
                        model="gpt-4o-mini",
                        max_concurrency=32,
                    )
                }
            )
    """

    _session: ClientSession | None = PrivateAttr(default=None)

    def _make_limiter(self, api_key: str) -> RateLimiter:
        """The limiter for one step, sharing the API key's limit through ``rate_limit_store``.

        It learns the provider's limits from response headers and paces requests just under
        them (see ``llm_assets.resources.ratelimit.limiter``).

        Examples:
            .. code-block:: python

                import dagster as dg
                from llm_assets.resources import LLMResource

                # Steps in every run and on every host share the key's limit through the
                # Postgres server that holds Dagster's run storage.
                defs = dg.Definitions(
                    resources={
                        "llm": LLMResource(
                            api_key=dg.EnvVar("OPENAI_API_KEY"),
                            rate_limit_store="postgres",
                            rate_limit_postgres_url=dg.EnvVar("DAGSTER_PG_URL"),
                        )
                    }
                )
        """
        store = open_rate_limit_store(
            self.rate_limit_store,
            sqlite_path=resolve_setting(
                self.rate_limit_sqlite_path, field="LLMResource.rate_limit_sqlite_path"
            ),
            postgres_url=resolve_setting(
                self.rate_limit_postgres_url, field="LLMResource.rate_limit_postgres_url"
            )
            or os.environ.get(POSTGRES_URL_ENV_VAR),
        )
        return AdaptiveRateLimiter(
            store,
            limit_key(self.base_url, api_key),
            window_s=self.rate_limit_window_s,
            target=self.rate_limit_target,
            model=self.rate_limit_model,
            rpm_limit=self.rpm_limit,
            tpm_limit=self.tpm_limit,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Resolves the API key once and opens the client the run's steps share."""
        self._session = ClientSession(self._settings())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Closes the client and its event loop."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _settings(self) -> SessionSettings:
        check_offline_guard(self.base_url)
        api_key = resolve_setting(self.api_key, field="LLMResource.api_key")
        if not api_key:
            if not is_loopback(self.base_url):
                raise UserError(
                    f"LLMResource has no api_key for {self.base_url}: pass "
                    "api_key=dg.EnvVar('OPENAI_API_KEY') and export OPENAI_API_KEY, or point "
                    "base_url at a local endpoint that needs no key"
                )
            api_key = "unused-local-endpoint"
        return SessionSettings(
            base_url=self.base_url,
            api_key=api_key,
            timeout_s=self.timeout_s,
            limiter=self._make_limiter(api_key),
        )

    def batch_client(self) -> batch_api.BatchClient:
        """A client of this endpoint's Batch API, with the key resolved like the chat client's.

        Examples:
            .. code-block:: python

                with llm.batch_client() as client:
                    status = client.retrieve("batch_abc")
        """
        settings = self._session.settings if self._session is not None else None
        api_key = settings.api_key if settings is not None else self._settings().api_key
        return batch_api.BatchClient(self.base_url, api_key, timeout_s=max(self.timeout_s, 120.0))

    def run_requests(
        self,
        requests: Iterable[ChatRequest],
        on_result: ResultCallback,
        *,
        should_stop: Callable[[], bool] | None = None,
        progress: ProgressCallback | None = None,
    ) -> EngineStats:
        """Sends ``requests`` concurrently and reports each result as it arrives.

        Inside a run the client opened by ``setup_for_execution`` is used; outside one (a
        notebook, a script) a client is opened for this call and closed after it.

        Args:
            requests: Requests to send.
            on_result: Called once per request, in completion order.
            should_stop: Polled before each new request; True stops sending.
            progress: Called every ``progress_interval_s`` seconds.

        Returns:
            Totals for the run.

        Raises:
            ProviderError: A failure no retry can fix (401/403, insufficient_quota, 404), or
                ``EndpointUnreachable`` when the circuit breaker opened.
            UserError: The offline guard refused the endpoint, or no API key is set.

        Examples:
            .. code-block:: python

                llm = LLMResource(base_url=sim.base_url, api_key="sk-sim")
                stats = llm.run_requests(requests, on_result=results.append)
        """
        request_list = list(requests)
        session = self._session
        owned = session is None
        if session is None:
            session = ClientSession(self._settings())
        try:

            def make_engine(client: openai.AsyncOpenAI) -> ChatEngine:
                return ChatEngine(
                    client,
                    base_url=self.base_url,
                    concurrency=self.max_concurrency,
                    max_retries=self.max_retries,
                    backoff_s=self.retry_backoff_s,
                    backoff_max_s=self.retry_backoff_max_s,
                    prices=self.price_book,
                    limiter=session.settings.limiter,
                    breaker_threshold=self.circuit_breaker_threshold,
                )

            return session.run(
                lambda client: make_engine(client).run(
                    request_list,
                    on_result,
                    should_stop=should_stop,
                    progress=progress,
                    progress_interval_s=self.progress_interval_s,
                )
            )
        finally:
            if owned:
                session.close()
