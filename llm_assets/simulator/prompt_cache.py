"""The provider's prompt cache: a prompt's prefix seen before is read from cache, and billed so.

The provider caches the prefixes of the prompts it answers: a prompt of at least 1,024 tokens
whose beginning it has seen recently (for the same model) is answered with
``usage.prompt_tokens_details.cached_tokens`` set to the longest such prefix, counted in steps
of 128 tokens from 1,024 on. The simulator does the same with its own token estimate, so a
task with a long shared system prompt shows the cached tokens, and the money, a user's bill
would.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from llm_assets.resources.llm.tokens import MESSAGE_OVERHEAD_TOKENS
from llm_assets.simulator.tokens import CHARS_PER_TOKEN, content_text, estimate_tokens

#: The shortest prefix the provider caches, and the step its cached length moves in.
MIN_CACHED_TOKENS = 1024
STEP_TOKENS = 128


def prefix_digests(model: str, messages: Iterable[Mapping[str, Any]]) -> tuple[bytes, ...]:
    """Digests of the prompt's cacheable prefixes: 1,024 tokens, then every 128 more.

    A prefix of ``n`` tokens holds whole messages while they fit (each its content's estimate
    plus the per-message overhead) and then the first characters of the next one.

    Args:
        model: The model asked; caches are per model.
        messages: The request's chat messages.

    Returns:
        One digest per cacheable prefix, shortest first; none for a prompt under 1,024 tokens.

    Examples:
        >>> long = [{"role": "system", "content": "x" * 4 * 1100}]
        >>> len(prefix_digests("m", long)), len(prefix_digests("m", long[:0]))
        (1, 0)
    """
    digests: list[bytes] = []
    running = hashlib.sha256(model.encode())
    tokens = 0
    boundary = MIN_CACHED_TOKENS
    for message in messages:
        text = content_text(message.get("content"))
        size = estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS
        running.update(b"\x00" + str(message.get("role", "")).encode() + b"\x00")
        taken = 0
        while tokens + size >= boundary:
            chars = max(0, boundary - tokens - MESSAGE_OVERHEAD_TOKENS) * CHARS_PER_TOKEN
            running.update(text[taken:chars].encode())
            taken = max(taken, chars)
            digests.append(running.copy().digest())
            boundary += STEP_TOKENS
        running.update(text[taken:].encode())
        tokens += size
    return tuple(digests)


class PromptCache:
    """The prefixes answered lately, forgetting the oldest past ``capacity``.

    Examples:
        >>> cache = PromptCache()
        >>> prefixes = prefix_digests("m", [{"role": "system", "content": "x" * 4 * 1300}])
        >>> cache.read(prefixes), cache.read(prefixes)
        (0, 1280)
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def read(self, prefixes: tuple[bytes, ...]) -> int:
        """The cached tokens of a prompt with ``prefixes``; then caches all of them."""
        cached = 0
        for index, digest in enumerate(prefixes):
            if digest in self._seen:
                cached = MIN_CACHED_TOKENS + index * STEP_TOKENS
                self._seen.move_to_end(digest)
        for digest in prefixes:
            self._seen[digest] = None
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return cached

    def clear(self) -> None:
        """Forgets every prefix."""
        self._seen.clear()
