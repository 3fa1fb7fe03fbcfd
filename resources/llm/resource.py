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
    RateLimitStore,
    limit_key,
    open_rate_limit_store,
)
from llm_assets.resources.settings import POSTGRES_URL_ENV_VAR, resolve_setting

# The key a local endpoint that needs none is sent (and its rate limit is stored under).
_LOCAL_KEY = "unused-local-endpoint"


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
        return AdaptiveRateLimiter(
            self._rate_limit_store(),
            limit_key(self.base_url, api_key),
            window_s=self.rate_limit_window_s,
            target=self.rate_limit_target,
            model=self.rate_limit_model,
            rpm_limit=self.rpm_limit,
            tpm_limit=self.tpm_limit,
        )

    def known_rate_limits(self) -> tuple[float, float]:
        """Requests and tokens per minute the endpoint allows, as set or as runs learned them.

        ``rpm_limit`` / ``tpm_limit`` when set, else what the ``x-ratelimit`` headers told the
        runs sharing ``rate_limit_store`` (the lower of the two when both); 0 while unknown.

        Examples:
            >>> LLMResource(api_key="sk-test", rpm_limit=500, tpm_limit=200_000).known_rate_limits()
            (500.0, 200000.0)
        """
        api_key = resolve_setting(self.api_key, field="LLMResource.api_key") or _LOCAL_KEY
        policy = self._rate_limit_store().read(limit_key(self.base_url, api_key))
        per_minute = 60.0 / self.rate_limit_window_s

        def lowest(stated: int | None, learned: int) -> float:
            known = [value for value in (stated, learned) if value]
            return min(known) * per_minute if known else 0.0

        return lowest(self.rpm_limit, policy.rpm), lowest(self.tpm_limit, policy.tpm)

    def _rate_limit_store(self) -> RateLimitStore:
        return open_rate_limit_store(
            self.rate_limit_store,
            sqlite_path=resolve_setting(
                self.rate_limit_sqlite_path, field="LLMResource.rate_limit_sqlite_path"
            ),
            postgres_url=resolve_setting(
                self.rate_limit_postgres_url, field="LLMResource.rate_limit_postgres_url"
            )
            or os.environ.get(POSTGRES_URL_ENV_VAR),
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
            api_key = _LOCAL_KEY
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
