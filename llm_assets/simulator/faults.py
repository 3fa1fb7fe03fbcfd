"""Which fault (if any) and how much latency an admitted request gets.

Faults come from two sources: a ``[[sim:NAME]]`` / ``[[sim:NAME:N]]`` marker in the last user
message (deterministic, for tests) or the rate knobs of ``SimulatorConfig`` (independent draws,
for benchmarks). A marker wins over the rate knobs.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from llm_assets.simulator.config import SimulatorConfig

MARKERS: tuple[str, ...] = (
    "500",
    "503",
    "content_filter",
    "context_length",
    "disconnect",
    "invalid_json",
    "length",
    "refusal",
    "slow",
)
"""Fault names accepted in ``[[sim:NAME]]`` markers; also the keys of ``faults_injected``."""

CONTENT_FAULTS = frozenset({"content_filter", "invalid_json", "length", "refusal"})
"""Faults that alter a chat answer; embeddings only get the transport faults."""

_RATE_KNOBS: tuple[tuple[str, str], ...] = (
    ("500", "fault_500"),
    ("503", "fault_503"),
    ("disconnect", "fault_disconnect"),
    ("slow", "fault_slow"),
    ("invalid_json", "fault_malformed_json"),
    ("length", "fault_length"),
)
_MARKER = re.compile(r"\[\[sim:([^\]:]*)(?::([^\]]*))?\]\]")
_MAX_LATENCY_FACTOR = 10.0


@dataclass(frozen=True)
class Marker:
    """A ``[[sim:NAME]]`` request, optionally limited to the first ``times`` sightings."""

    name: str
    times: int | None = None


class MarkerError(ValueError):
    """A ``[[sim:...]]`` marker names no known fault or has a bad count."""


def find_marker(text: str) -> Marker | None:
    """Return the first ``[[sim:...]]`` marker in ``text``.

    Args:
        text: Usually the last user message.

    Returns:
        The marker, or None when the text has none.

    Raises:
        MarkerError: If the marker is not one of ``MARKERS`` or its count is not an integer.

    Examples:
        >>> find_marker("rate this [[sim:500:2]]")
        Marker(name='500', times=2)
    """
    match = _MARKER.search(text)
    if match is None:
        return None
    name, times = match.group(1), match.group(2)
    if name not in MARKERS:
        raise MarkerError(
            f"unknown simulator marker [[sim:{name}]]; use one of: {', '.join(MARKERS)}"
        )
    if times is None:
        return Marker(name)
    if not times.isdigit():
        raise MarkerError(f"marker [[sim:{name}:{times}]] needs a whole number after the colon")
    return Marker(name, int(times))


def choose_fault(
    config: SimulatorConfig,
    rng: random.Random,
    marker: Marker | None,
    times_seen_before: int,
    *,
    chat: bool = True,
    admission: int = 0,
) -> str | None:
    """Pick the fault for one admitted request.

    Args:
        config: Current knobs.
        rng: Per-request RNG (seeded from the config seed and the request).
        marker: The request's marker, if any.
        times_seen_before: How often this exact request was admitted before.
        chat: False for embeddings, which only get transport faults.
        admission: How many requests were admitted before this one (``fault_draws="even"``).

    Returns:
        A name from ``MARKERS``, or None for a normal answer.

    Examples:
        >>> from llm_assets.simulator.config import SimulatorConfig
        >>> even = SimulatorConfig(fault_500=0.2, fault_draws="even")
        >>> rng = random.Random(0)
        >>> [choose_fault(even, rng, None, 0, admission=n) for n in range(5)].count("500")
        1
    """
    if marker is not None:
        if marker.times is not None and times_seen_before >= marker.times:
            return None
        return marker.name
    for name, knob in _RATE_KNOBS:
        if not chat and name in CONTENT_FAULTS:
            continue
        rate = getattr(config, knob)
        if not rate:
            continue
        if config.fault_draws == "even":
            # This admission is the one where the running count of `rate` crosses a whole number.
            if math.floor((admission + 1) * rate + 1e-9) > math.floor(admission * rate + 1e-9):
                return name
        elif rng.random() < rate:
            return name
    return None


def draw_latency_s(config: SimulatorConfig, rng: random.Random) -> float:
    """Draw the added latency for one request, in seconds.

    Args:
        config: Current knobs (``latency_ms``, ``latency_jitter``).
        rng: Per-request RNG.

    Returns:
        ``latency_ms`` exactly without jitter, else a lognormal draw with that mean and sigma
        ``latency_jitter``, capped at ten times the mean.
    """
    mean_ms = config.latency_ms
    if mean_ms <= 0:
        return 0.0
    sigma = config.latency_jitter
    if sigma <= 0:
        return mean_ms / 1000
    # mu is chosen so that the lognormal's mean equals latency_ms.
    mu = math.log(mean_ms) - sigma * sigma / 2
    return min(rng.lognormvariate(mu, sigma), _MAX_LATENCY_FACTOR * mean_ms) / 1000
