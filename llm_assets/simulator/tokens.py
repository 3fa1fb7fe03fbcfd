"""Token estimates of the simulator: the client's own estimate, so ``usage`` matches it.

The estimate itself lives in ``llm_assets.resources.llm``; this module adds what only the
simulator needs (cutting an answer to ``max_tokens``).
"""

from __future__ import annotations

from llm_assets.resources.llm.tokens import (
    CHARS_PER_TOKEN,
    content_text,
    estimate_prompt_tokens,
    estimate_tokens,
)

__all__ = ["content_text", "estimate_prompt_tokens", "estimate_tokens", "truncate_to_tokens"]


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Cuts ``text`` so that its estimate is at most ``max_tokens``.

    Args:
        text: Text to shorten.
        max_tokens: Token budget.

    Returns:
        ``text`` unchanged if it fits, else its longest prefix that fits.

    Examples:
        >>> truncate_to_tokens("abcdefgh", 1)
        'abcd'
    """
    return text[: max(0, max_tokens) * CHARS_PER_TOKEN]
