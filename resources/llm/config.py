"""The fields of ``LLMResource``: the endpoint, its key, and how requests are paced and retried.

What the resource does with them at run time (the client session, the engine, the rate
limiter) is in ``resource``.
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import Field

from llm_assets.resources.llm.pricing import DEFAULT_PROVIDER, ModelPrice, PriceBook

DEFAULT_CONTEXT_WINDOWS: dict[str, int] = {
    "sim-small": 16_384,
    "sim-large": 131_072,
    "gpt-4o-mini": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1": 1_047_576,
}


class LLMResourceConfig(dg.ConfigurableResource):
    """The configuration of an OpenAI-compatible endpoint; ``LLMResource`` is the resource to use.

    Every field is described where it is declared; ``api_key`` and ``rate_limit_postgres_url``
    are masked in the repr.
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
        default_factory=dict,
        description="Price overrides: USD per 1M input, cached input and output tokens by "
        "model name (prefix match), on top of the provider's list prices (genai-prices).",
    )
    price_provider: str = Field(
        default=DEFAULT_PROVIDER,
        description="The genai-prices provider whose list prices bill the calls (openai, "
        "azure, groq, ...); a model it does not list costs 0 unless priced in prices, and is "
        "named in the step's metadata as unpriced_models.",
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

    @property
    def price_book(self) -> PriceBook:
        """What calls through this endpoint cost: ``prices`` over the provider's list prices."""
        return PriceBook(self.prices, self.price_provider)

    def context_window(self, model: str) -> int | None:
        """The context window of ``model`` (longest prefix match), or ``None`` if unknown."""
        matches = [name for name in self.context_windows if model.startswith(name)]
        return self.context_windows[max(matches, key=len)] if matches else None

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_masked(value) if name in _SECRET_FIELDS else value)


_SECRET_FIELDS = frozenset({"api_key", "rate_limit_postgres_url"})


def _masked(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dg.EnvVar):
        return f"EnvVar({value.env_var_name!r})"
    return "***"
