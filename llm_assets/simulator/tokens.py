"""The shared token estimate used by the simulator and by pre-send estimates on the client side.

This is a deliberately simple, deterministic estimate (about four characters per token plus a
fixed per-message overhead), not a tokenizer: it needs no model files and gives both sides of
the wire the same number for the same text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
"""Role markers and separators cost a few tokens per message in real chat formats."""


def estimate_tokens(text: str) -> int:
    """Estimate the token count of ``text`` as ``ceil(len(text) / 4)``.

    Args:
        text: Any text.

    Returns:
        The estimate; 0 for the empty string.

    Examples:
        >>> from llm_assets.simulator import estimate_tokens
        >>> estimate_tokens("great battery life")
        5
    """
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def content_text(content: Any) -> str:
    """Return the text of a chat message ``content`` (a string or a list of parts).

    Args:
        content: A string, ``None``, or a list of ``{"type": "text", "text": ...}`` parts;
            non-text parts are ignored.

    Returns:
        The concatenated text.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return str(content)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Estimate the prompt tokens of chat ``messages``: text estimate + 4 per message.

    Args:
        messages: OpenAI chat messages (``{"role": ..., "content": ...}``).

    Returns:
        The estimate the simulator reports as ``usage.prompt_tokens``.

    Examples:
        >>> from llm_assets.simulator import estimate_prompt_tokens
        >>> estimate_prompt_tokens([{"role": "user", "content": "great battery life"}])
        9
    """
    return sum(
        estimate_tokens(content_text(message.get("content"))) + MESSAGE_OVERHEAD_TOKENS
        for message in messages
    )


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Cut ``text`` so that its estimate is at most ``max_tokens``.

    Args:
        text: Text to shorten.
        max_tokens: Token budget.

    Returns:
        ``text`` unchanged if it fits, else its longest prefix that fits.
    """
    return text[: max(0, max_tokens) * CHARS_PER_TOKEN]
