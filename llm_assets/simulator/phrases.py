"""Placeholder phrases built from the words of the prompt, so outputs visibly relate to inputs."""

from __future__ import annotations

import random
import re

MARKER_PATTERN = re.compile(r"\[\[sim:[^\]]*\]\]")
_WORD = re.compile(r"[^\W\d_][\w'-]*")
_FALLBACK_WORDS = ("placeholder", "simulated", "output")
PREFIX = "[sim]"
"""Every generated phrase starts with this, so no one mistakes it for a model's answer."""


class PhraseMaker:
    """Makes short ``[sim] ...`` phrases from the words of one prompt.

    Args:
        text: The prompt text (usually the last user message); markers are ignored.
    """

    def __init__(self, text: str) -> None:
        words = _WORD.findall(MARKER_PATTERN.sub(" ", text).lower())
        self.words: tuple[str, ...] = tuple(words) or _FALLBACK_WORDS

    def phrase(
        self,
        rng: random.Random,
        min_length: int = 0,
        max_length: int | None = None,
        *,
        min_words: int = 2,
        max_words: int = 4,
    ) -> str:
        """Return a phrase of consecutive prompt words, fitted to the length bounds.

        Args:
            rng: Source of the (deterministic) choices.
            min_length: Minimum length in characters.
            max_length: Maximum length in characters, if bounded.
            min_words: Fewest prompt words to use.
            max_words: Most prompt words to use.

        Returns:
            E.g. ``"[sim] great battery life"``, padded or cut to satisfy the bounds.
        """
        # Short prompts would otherwise wrap around and repeat their words.
        count = min(rng.randint(min_words, max_words), len(self.words))
        start = rng.randrange(len(self.words))
        chosen = [self.words[(start + offset) % len(self.words)] for offset in range(count)]
        text = f"{PREFIX} {' '.join(chosen)}"
        offset = count
        while len(text) < min_length:
            text = f"{text} {self.words[(start + offset) % len(self.words)]}"
            offset += 1
        if max_length is not None and len(text) > max_length:
            text = text[:max_length].rstrip() if max_length >= len(PREFIX) else text[:max_length]
            # rstrip may undercut min_length when the bounds are tight.
            text = text.ljust(min_length, "x")
        return text

    def sentence(self, rng: random.Random) -> str:
        """Return a plain-text placeholder reply mentioning a few prompt words.

        Args:
            rng: Source of the (deterministic) choices.

        Returns:
            A one-sentence reply that says it is simulated.
        """
        topic = self.phrase(rng, min_words=3, max_words=6).removeprefix(f"{PREFIX} ")
        return f"{PREFIX} Simulated reply, not a model answer. Topic: {topic}."
