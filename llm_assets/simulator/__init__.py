"""Offline OpenAI-compatible simulator: placeholder outputs, real API behaviour.

This is a simulator, not a model. Its answers are deterministic placeholders (strings look like
``"[sim] great battery life"``, built from words of the last user message) that are valid for
the requested JSON schema. What it does reproduce faithfully is the API around the answers:
response shapes, honest token ``usage`` (an estimate, see ``estimate_tokens``), context-window
errors, API-key checks, per-key RPM/TPM limits (a sliding window, or OpenAI-style continuous
buckets with ``limit_mode="bucket"``) with OpenAI's ``x-ratelimit-*`` and ``retry-after``
headers, latency, and injected faults. Point the real ``openai`` SDK at it with
``base_url=<simulator url>/v1``.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``; and the
control plane ``GET /_simulator/stats``, ``POST /_simulator/config`` (JSON body of knobs),
``POST /_simulator/reset``.

Per-request fault markers: put ``[[sim:NAME]]`` in the last user message to apply one fault
to that request, or ``[[sim:NAME:N]]`` to apply it only the first N times this exact request
is admitted (so retries can be seen to recover). NAME is one of:

- ``500`` / ``503``: HTTP 500 / 503 with an OpenAI ``server_error`` body.
- ``disconnect``: the connection is closed without a response (``APIConnectionError``).
- ``slow``: the answer is delayed by ``slow_ms`` (default 30 s) so the client times out.
- ``invalid_json``: HTTP 200 whose content is truncated, invalid JSON.
- ``length``: truncated content with ``finish_reason="length"``.
- ``context_length``: HTTP 400 ``context_length_exceeded``.
- ``content_filter``: ``finish_reason="content_filter"`` and ``content=None``.
- ``refusal``: ``message.refusal`` set and ``content=None``.

Rate knobs (``fault_500``, ``fault_503``, ``fault_disconnect``, ``fault_slow``,
``fault_malformed_json``, ``fault_length``) inject the same faults at random, drawn from an RNG
seeded by ``seed``, the request and how often it was seen. ``insufficient_quota=True`` answers
every request 429 ``insufficient_quota``. Embeddings only get the transport faults.

Examples:
    >>> import openai
    >>> from llm_assets.simulator import SimulatorConfig, SimulatorServer
    >>> with SimulatorServer(SimulatorConfig(rpm=120, window_s=6.0)) as sim:
    ...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
    ...     reply = client.chat.completions.create(
    ...         model="sim-small",
    ...         messages=[{"role": "user", "content": "Summarise: great battery life"}],
    ...     )
    ...     reply.system_fingerprint
    'llm-assets-simulator'

From a shell: ``python -m llm_assets.simulator --port 8765 --rpm 600 --window-s 6``.
"""

from llm_assets.simulator.binding import PortInUseError
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.server import SimulatorProcess, SimulatorServer
from llm_assets.simulator.tokens import estimate_prompt_tokens, estimate_tokens

__all__ = [
    "PortInUseError",
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorServer",
    "estimate_prompt_tokens",
    "estimate_tokens",
]
