"""Counters behind ``GET /_simulator/stats``."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from llm_assets.simulator.config import SIMULATOR_NAME, SimulatorConfig
from llm_assets.simulator.errors import mask_key
from llm_assets.simulator.limits import BucketLimiter, RateLimiter


class SimulatorStats:
    """Counters for one simulator, zeroed by ``reset()``.

    Only the event loop mutates them, so plain integers suffice.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero every counter and forget which requests were seen."""
        self.started_at = time.time()
        self.requests_total = 0
        self.chat_requests = 0
        self.chat_completions = 0
        self.embedding_requests = 0
        self.embeddings = 0
        self.rate_limited = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        """Prompt tokens answered from the prompt cache (``prompt_cache``)."""
        self.completion_tokens = 0
        self.duplicate_requests = 0
        self.status_counts: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.admissions = 0
        """Requests admitted past the rate limits (``fault_draws="even"`` counts on it)."""
        self.times_admitted: dict[str, int] = {}
        """Canonical body hash -> admissions; drives ``[[sim:NAME:N]]`` and fault draws."""
        self.answered: set[str] = set()
        """Canonical body hashes of chat requests already answered 200."""

    def snapshot(
        self, config: SimulatorConfig, *limiters: RateLimiter | BucketLimiter
    ) -> dict[str, Any]:
        """Return all counters as JSON-ready data, with API keys masked.

        Args:
            config: The active config, included (masked) in the output.
            limiters: Sources of the per-key counters (window and bucket mode); a key limited
                in both modes over time gets the sum of its counts and the larger peaks.

        Returns:
            The body of ``GET /_simulator/stats``.
        """
        by_key: dict[str, dict[str, int]] = {}
        windows = [item for limiter in limiters for item in limiter.windows.items()]
        for key, window in windows:
            entry = by_key.setdefault(
                mask_key(key),
                {
                    "admitted": 0,
                    "rate_limited": 0,
                    "max_requests_in_window": 0,
                    "max_tokens_in_window": 0,
                },
            )
            # Two keys can share a mask; their counts then merge, peaks take the larger one.
            entry["admitted"] += window.admitted
            entry["rate_limited"] += window.rate_limited
            entry["max_requests_in_window"] = max(
                entry["max_requests_in_window"], window.max_requests_in_window
            )
            entry["max_tokens_in_window"] = max(
                entry["max_tokens_in_window"], window.max_tokens_in_window
            )
        return {
            "simulator": SIMULATOR_NAME,
            "uptime_s": round(time.time() - self.started_at, 3),
            "requests_total": self.requests_total,
            "chat_requests": self.chat_requests,
            "chat_completions": self.chat_completions,
            "embedding_requests": self.embedding_requests,
            "embeddings": self.embeddings,
            "status_counts": dict(self.status_counts),
            "rate_limited": self.rate_limited,
            "faults_injected": dict(self.faults_injected),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "duplicate_requests": self.duplicate_requests,
            "unique_requests_answered": len(self.answered),
            "by_key": by_key,
            "config": config.public_dump(),
        }
