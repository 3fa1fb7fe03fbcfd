"""Knobs of the OpenAI-compatible simulator, as one validated pydantic model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm_assets.simulator.errors import mask_key

SIMULATOR_NAME = "llm-assets-simulator"
"""Label used wherever a response could be mistaken for a real model's output."""

DEFAULT_MODELS: tuple[str, ...] = ("sim-small", "sim-large")


class SimulatorConfig(BaseModel):
    """Every runtime knob of the simulator.

    All knobs can be changed while the server runs (``POST /_simulator/config``), set from the
    command line (``--latency-ms 20``), or passed to ``SimulatorServer`` / ``SimulatorProcess``.
    Fault fractions are independent draws per admitted request from an RNG derived from
    ``seed`` and the request, so a given workload sees the same faults run after run.

    Examples:
        >>> from llm_assets.simulator import SimulatorConfig
        >>> config = SimulatorConfig(rpm=60, window_s=6.0, fault_503=0.05)
        >>> config.model_copy(update={"latency_ms": 25.0}).latency_ms
        25.0
        >>> SimulatorConfig(rpm=600, limit_mode="combined").limit_mode  # as OpenAI enforces
        'combined'
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_keys: list[str] = Field(
        default_factory=list,
        description="Accepted bearer tokens; empty accepts any non-empty token.",
    )
    seed: int = Field(default=0, description="Seed for latency and fault draws.")

    latency_ms: float = Field(default=0.0, ge=0, description="Mean added latency per request.")
    latency_jitter: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Lognormal sigma around latency_ms (0 = constant); draws capped at 10x mean.",
    )

    rpm: int = Field(default=0, ge=0, description="Requests per window per key; 0 = unlimited.")
    tpm: int = Field(
        default=0,
        ge=0,
        description=(
            "Tokens per window per key, counted at admission as prompt estimate + max_tokens "
            "(as OpenAI does); 0 = unlimited."
        ),
    )
    window_s: float = Field(
        default=60.0,
        gt=0,
        description="Period rpm and tpm are stated per, in seconds (60 mimics 'per minute'): "
        "the sliding window's length in window and combined modes, limit/window_s is the "
        "refill per second in bucket and combined modes.",
    )
    limit_mode: str = Field(
        default="window",
        pattern=r"^(window|bucket|combined)$",
        description="How rpm/tpm are enforced: 'window' (at most the limit in any sliding "
        "window_s), 'bucket' (continuous buckets refilled at limit/window_s per second holding "
        "burst_s of refill; remaining = what the bucket holds, reset = time until it is full) "
        "or 'combined' (both at once, as OpenAI does: per second and over the whole window_s; "
        "the limit with less room left decides remaining and reset).",
    )
    burst_s: float = Field(
        default=1.0,
        gt=0,
        description="Bucket and combined modes: seconds of refill a bucket holds, i.e. the "
        "largest burst.",
    )

    context_window: int = Field(
        default=16_384, gt=0, description="Context window in tokens for models not listed below."
    )
    context_windows: dict[str, int] = Field(
        default_factory=dict, description="Per-model context window overrides, in tokens."
    )
    accepted_models: list[str] = Field(
        default_factory=list,
        description="Chat models answered beyond the simulator's own and the provider's "
        "(llm_assets.simulator.provider.KNOWN_MODELS); any other is a 404 model_not_found.",
    )
    accepted_params: list[str] = Field(
        default_factory=list,
        description="Chat request fields taken beyond the provider's own (an OpenAI-compatible "
        "server's, such as vLLM's top_k); any other unknown field is refused with a 400, as "
        "the provider refuses it.",
    )
    embedding_dimensions: int = Field(
        default=256, gt=0, description="Embedding size when the request has no `dimensions`."
    )

    fault_draws: str = Field(
        default="random",
        pattern=r"^(random|even)$",
        description="How the fault_* fractions fall: 'random' (an independent draw per "
        "admission) or 'even' (on evenly spaced admissions, so exactly that fraction of "
        "admissions fails, e.g. every 5th for 0.2: benchmarks measure the client, not the dice).",
    )
    fault_500: float = Field(default=0.0, ge=0, le=1, description="Fraction answered HTTP 500.")
    fault_503: float = Field(default=0.0, ge=0, le=1, description="Fraction answered HTTP 503.")
    fault_disconnect: float = Field(
        default=0.0, ge=0, le=1, description="Fraction whose connection is closed unanswered."
    )
    fault_slow: float = Field(
        default=0.0, ge=0, le=1, description="Fraction delayed by slow_ms so clients time out."
    )
    fault_malformed_json: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of chat answers whose content is truncated, invalid JSON.",
    )
    fault_length: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of chat answers cut short with finish_reason 'length'.",
    )
    slow_ms: float = Field(default=30_000.0, ge=0, description="Delay applied by the slow fault.")
    insufficient_quota: bool = Field(
        default=False,
        description="Answer every request 429 insufficient_quota, like an account out of credit.",
    )

    batch_auto_complete_s: float = Field(
        default=3.0,
        ge=0,
        description=(
            "Seconds a batch takes on its own from validating to its end, a third per step; "
            "0 = batches move only on POST /_simulator/batches/advance."
        ),
    )
    batch_outcome: str = Field(
        default="completed",
        pattern=r"^(completed|expired|failed)$",
        description="How batches end unless metadata sim_outcome says otherwise.",
    )
    batch_line_error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of a batch's lines answered 500 (metadata sim_line_error_rate).",
    )
    batch_partial_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Fraction of lines finished when a batch expires or is cancelled "
            "(metadata sim_partial_fraction)."
        ),
    )
    batch_max_file_bytes: int = Field(
        default=200 * 1024 * 1024, gt=0, description="Largest batch input file accepted."
    )
    batch_max_lines: int = Field(
        default=50_000, gt=0, description="Most requests one batch input file may hold."
    )

    def context_window_for(self, model: str) -> int:
        """Return the context window, in tokens, that applies to ``model``.

        Args:
            model: Model name from the request.

        Returns:
            The per-model override if present, else ``context_window``.
        """
        return self.context_windows.get(model, self.context_window)

    def public_dump(self) -> dict[str, Any]:
        """Return the config as JSON-ready data with API keys masked.

        Returns:
            A dict safe to show in stats output or logs.
        """
        data = self.model_dump(mode="json")
        data["api_keys"] = [mask_key(key) for key in self.api_keys]
        return data
