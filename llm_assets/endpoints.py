"""Which kind of endpoint an ``LLMResource.base_url`` points at, for the asset's kind badge.

Judged from the URL alone (no request is made when a code location loads): well-known API
hosts by name, servers on this machine by their usual port (the bundled simulator 8765,
vLLM 8000, Ollama 11434, llama.cpp 8080, LM Studio 1234). Anything else is
``openai-compatible``.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_KIND = "openai"
OTHER_KIND = "openai-compatible"

_HOSTS = {
    "api.openai.com": "openai",
    "openai.azure.com": "azure",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.fireworks.ai": "fireworks",
    "generativelanguage.googleapis.com": "gemini",
}

_LOCAL_PORTS = {
    8765: "simulator",
    8000: "vllm",
    11434: "ollama",
    8080: "llamacpp",
    1234: "lmstudio",
}


def endpoint_kind(base_url: str | None) -> str:
    """The kind badge for an OpenAI-compatible ``base_url``.

    Args:
        base_url: ``LLMResource.base_url``; ``None`` means the resource's default (OpenAI).

    Returns:
        A Dagster kind such as ``openai``, ``vllm``, ``ollama`` or ``simulator``.

    Examples:
        >>> endpoint_kind("https://api.openai.com/v1")
        'openai'
        >>> endpoint_kind("http://127.0.0.1:8765/v1"), endpoint_kind("http://localhost:8000/v1")
        ('simulator', 'vllm')
        >>> endpoint_kind("https://llm.example.com/v1")
        'openai-compatible'
    """
    if not base_url:
        return DEFAULT_KIND
    parts = urlsplit(base_url if "//" in base_url else f"//{base_url}")
    host = (parts.hostname or "").lower()
    for known, kind in _HOSTS.items():
        if host == known or host.endswith(f".{known}"):
            return kind
    if "vllm" in host:
        return "vllm"
    if "ollama" in host:
        return "ollama"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port in _LOCAL_PORTS and _is_local(host):
        return _LOCAL_PORTS[port]
    return OTHER_KIND


def _is_local(host: str) -> bool:
    if host in ("localhost", "host.docker.internal") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_private
    except ValueError:
        return False
