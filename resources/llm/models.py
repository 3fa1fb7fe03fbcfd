"""What the provider's model families take: reasoning models differ from chat models."""

from __future__ import annotations

import re

_REASONING = re.compile(r"^(o[1-9]|gpt-5)(?!.*-chat)")


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` is a reasoning model.

    A reasoning model takes ``max_completion_tokens`` (never ``max_tokens``) and only the
    default temperature.

    Examples:
        >>> is_reasoning_model("o4-mini"), is_reasoning_model("gpt-5-mini")
        (True, True)
        >>> is_reasoning_model("gpt-4o-mini"), is_reasoning_model("gpt-5-chat-latest")
        (False, False)
    """
    return _REASONING.match(model) is not None
