"""``LLMResource``: how llm-assets talks to any OpenAI-compatible endpoint."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

import dagster as dg
import openai
from pydantic import Field, PrivateAttr

# The module, not the class: the batch client builds on this family's inner modules (chat types,
# failures, the offline guard), so either family may be imported first.
from llm_assets.resources.batch import client as batch_api
from llm_assets.resources.errors import UserError
from llm_assets.resources.llm.engine import ChatEngine, ProgressCallback, ResultCallback
from llm_assets.resources.llm.offline import check_offline_guard, is_loopback
from llm_assets.resources.llm.pricing import DEFAULT_PRICES, ModelPrice
from llm_assets.resources.llm.session import ClientSession, SessionSettings
from llm_assets.resources.llm.types import ChatRequest, EngineStats
from llm_assets.resources.ratelimit import (
    AdaptiveRateLimiter,
    RateLimiter,
    limit_key,
    open_rate_limit_store,
)
from llm_assets.resources.settings import POSTGRES_URL_ENV_VAR, resolve_setting

DEFAULT_CONTEXT_WINDOWS: dict[str, int] = {
    "sim-small": 16_384,
    "sim-large": 131_072,
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1": 1_047_576,
}


class LLMResource(dg.ConfigurableResource):
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

    base_url: str = Field(
        default="https://api.openai.com/v1",
        description="Base URL of an OpenAI-compatible API, ending in /v1.",
    )
    api_key: str | None = Field(
        default=None,
        description="API key; pass dg.EnvVar('OPENAI_API_KEY') so it never sits in code. "
        "Required unless base_url is on this machine (a local server that needs no key). "
        "Never shown in a repr, log, error or metadata.",
    )
    model: str = Field(
        default="gpt-4o-mini", description="Model used by tasks that do not name one."
    )
    max_concurrency: int = Field(
        default=16,
        description="Senders per step: at most this many HTTP requests in flight (one sender "
        "at a time may be waiting for the rate limiter instead); rows waiting for a retry do "
        "not count.",
    )
    timeout_s: float = Field(default=60.0, description="Timeout of one HTTP attempt, seconds.")
    max_retries: int = Field(
        default=6, description="Retries of a transient failure (5xx, timeout, connection)."
    )
    retry_backoff_s: float = Field(
        default=0.5,
        description="First retry delay while the endpoint is overloaded (most recent attempts "
        "failing); doubles per failure of the row. An isolated failure is retried after at "
        "most min(0.1 s, this).",
    )
    retry_backoff_max_s: float = Field(default=30.0, description="Longest retry delay.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per 1M input/output tokens by model name (prefix match).",
    )
    context_windows: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_CONTEXT_WINDOWS),
        description="Context window in tokens by model; prompts over it fail before sending.",
    )
    progress_interval_s: float = Field(
        default=5.0, description="Seconds between progress lines in the run log."
    )
    rate_limit_store: Literal["memory", "sqlite", "postgres"] = Field(
        default="memory",
        description="Where steps sharing an API key share its rate limit: 'memory' (one "
        "process), 'sqlite' (processes of one host, e.g. the multiprocess executor) or "
        "'postgres' (every host; the server of Dagster's run storage works).",
    )
    rate_limit_sqlite_path: str | None = Field(
        default=None,
        description="SQLite file of the 'sqlite' store; default "
        "$DAGSTER_HOME/llm_assets_rate_limits.sqlite, next to the Dagster instance.",
    )
    rate_limit_postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the 'postgres' store (table llm_assets.rate_buckets); "
        "pass dg.EnvVar('DAGSTER_PG_URL'). It is never logged.",
    )
    rate_limit_window_s: float = Field(
        default=60.0,
        gt=0,
        description="The period the provider's limits are stated per, in seconds; must match "
        "the provider (60 for OpenAI's per-minute limits, the simulator's window_s for it).",
    )
    rate_limit_model: Literal["bucket", "window"] = Field(
        default="bucket",
        description="How the provider counts its limit: 'bucket' (OpenAI, Azure OpenAI, "
        "Anthropic: refilled continuously at limit/window per second; paced at the full "
        "refill rate) or 'window' (a server counting a sliding window, such as the "
        "simulator's window mode; paced at 97% of the limit).",
    )
    rate_limit_target: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Fraction of the provider's limit to aim for; None = 1.0 with the bucket "
        "model, 0.97 with the window model (the rest absorbs timing jitter).",
    )
    rpm_limit: int | None = Field(
        default=None,
        description="Requests per window to stay under; None learns the limit from the "
        "provider's x-ratelimit headers (a lower learned limit still wins).",
    )
    tpm_limit: int | None = Field(
        default=None,
        description="Tokens per window to stay under; None learns the limit from headers.",
    )
    circuit_breaker_threshold: int = Field(
        default=8,
        ge=1,
        description="Systemic failed attempts in a row across the step's workers (connection "
        "refused, DNS, TLS, timeouts, HTTP 500/502/503/504) after which, once they have lasted "
        "one request's backoff schedule, the step stops with EndpointUnreachable instead of "
        "failing every row.",
    )

    batch_discount: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of the online price the Batch API charges (OpenAI: 0.5); batch "
        "answers are recorded in the ledger at this price.",
    )

    _session: ClientSession | None = PrivateAttr(default=None)

    def context_window(self, model: str) -> int | None:
        """The context window of ``model`` (longest prefix match), or ``None`` if unknown."""
        matches = [name for name in self.context_windows if model.startswith(name)]
        return self.context_windows[max(matches, key=len)] if matches else None

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

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_masked(value) if name in _SECRET_FIELDS else value)

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
                    prices=self.prices,
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


_SECRET_FIELDS = frozenset({"api_key", "rate_limit_postgres_url"})


def _masked(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dg.EnvVar):
        return f"EnvVar({value.env_var_name!r})"
    return "***"
