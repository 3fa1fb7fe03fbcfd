"""The assistant message of a simulated chat completion, including content-level faults."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from llm_assets.simulator.phrases import PREFIX, PhraseMaker
from llm_assets.simulator.schema_fill import fill_schema
from llm_assets.simulator.tokens import estimate_tokens, truncate_to_tokens

REFUSAL_TEXT = f"{PREFIX} Simulated refusal: the simulator was asked to refuse this request."


class ResponseFormatError(ValueError):
    """The request's ``response_format`` is malformed or uses an unsupported schema."""


@dataclass(frozen=True)
class Answer:
    """What goes into ``choices[0]``."""

    content: str | None
    finish_reason: str
    refusal: str | None = None


def build_content(response_format: Any, last_user_text: str, rng: random.Random) -> str:
    """Produce the full assistant content for one chat request, before any fault.

    Args:
        response_format: The request's ``response_format`` (None, ``{"type": "text"}``,
            ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {...}}``).
        last_user_text: Text of the last user message; placeholder strings reuse its words.
        rng: RNG seeded from the request, so equal requests get equal content.

    Returns:
        A placeholder sentence, or JSON text valid for the requested format.

    Raises:
        ResponseFormatError: If ``response_format`` cannot be honoured.
    """
    return _content(response_format, PhraseMaker(last_user_text), rng)


def finish_answer(content: str, fault: str | None, max_tokens: int | None) -> Answer:
    """Apply a content fault and the completion budget to ``content``.

    Args:
        content: Output of ``build_content``.
        fault: ``invalid_json``, ``length``, ``content_filter``, ``refusal`` or None; other
            faults do not change the content.
        max_tokens: Completion budget; longer content is cut and ends with ``length``.

    Returns:
        The answer for ``choices[0]``.
    """
    if fault == "content_filter":
        return Answer(None, "content_filter")
    if fault == "refusal":
        return Answer(None, "stop", refusal=REFUSAL_TEXT)
    finish_reason = "stop"
    if fault in ("invalid_json", "length"):
        content = content[: max(1, len(content) // 2)]
        if fault == "length":
            finish_reason = "length"
    if max_tokens is not None and estimate_tokens(content) > max_tokens:
        content = truncate_to_tokens(content, max_tokens)
        finish_reason = "length"
    return Answer(content, finish_reason)


def _content(response_format: Any, phrases: PhraseMaker, rng: random.Random) -> str:
    if response_format is None:
        return phrases.sentence(rng)
    if not isinstance(response_format, dict):
        raise ResponseFormatError("response_format must be an object with a 'type'")
    kind = response_format.get("type", "text")
    if kind == "text":
        return phrases.sentence(rng)
    if kind == "json_object":
        return json.dumps(
            {"simulated": True, "summary": phrases.phrase(rng), "keywords": list(phrases.words[:3])}
        )
    if kind != "json_schema":
        raise ResponseFormatError(
            f"response_format type {kind!r} is not supported; use text, json_object or json_schema"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise ResponseFormatError("response_format.json_schema.schema must be a JSON schema object")
    try:
        value = fill_schema(spec["schema"], rng, phrases)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ResponseFormatError(f"cannot generate a value for this schema: {exc}") from exc
    return json.dumps(value, ensure_ascii=False)
