"""Deterministic unit-norm placeholder embeddings."""

from __future__ import annotations

import base64
import hashlib
import math
import struct


def embed(text: str, model: str, dimensions: int) -> list[float]:
    """Return a unit-norm vector that depends only on ``model``, ``text`` and ``dimensions``.

    The components come from SHAKE-256 of the input, so they carry no meaning: equal texts get
    equal vectors, different texts get (almost surely) different ones.

    Args:
        text: The input string.
        model: Model name; part of the hash so models disagree like real ones do.
        dimensions: Vector length.

    Returns:
        ``dimensions`` floats with Euclidean norm 1.

    Examples:
        >>> vector = embed("great battery life", "sim-embed", 8)
        >>> len(vector), round(sum(x * x for x in vector), 6)
        (8, 1.0)
    """
    digest = hashlib.shake_256(f"{model}\x00{text}".encode()).digest(2 * dimensions)
    raw = [value - 32767.5 for (value,) in struct.iter_unpack("<H", digest)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def to_base64(vector: list[float]) -> str:
    """Encode a vector as OpenAI does for ``encoding_format="base64"`` (little-endian float32).

    Args:
        vector: The embedding.

    Returns:
        The base64 text.
    """
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
