"""Validation and hashing of incoming OpenAI request bodies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llm_assets.simulator.tokens import content_text


class InvalidRequest(ValueError):
    """The request body is not one the OpenAI API would accept; answered with a 400."""

    status = 400

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def parse_body(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body.

    Args:
        raw: The HTTP body.

    Returns:
        The decoded object.

    Raises:
        InvalidRequest: If the body is not a JSON object.
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            "payload."
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def digest(value: Any) -> str:
    """Return the sha256 hex digest of ``value``'s canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def require_model(body: dict[str, Any]) -> str:
    """Return ``body["model"]``, which must be a non-empty string."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    return model


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return ``body["messages"]``, which must be a non-empty list of objects with a role."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"messages[{index}] must be an object with a 'role'", param=f"messages.{index}"
            )
    if body.get("stream"):
        raise InvalidRequest(
            "the simulator does not support stream=true; send a non-streaming request",
            param="stream",
        )
    return messages


def completion_budget(body: dict[str, Any]) -> int | None:
    """Return ``max_completion_tokens`` (preferred) or ``max_tokens``, if set."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return value
    return None


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Return the text of the last ``user`` message (empty if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    """Return the embedding inputs as strings (token-id arrays are embedded by their text)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) for item in value):
            return [json.dumps(value)]
        if all(isinstance(item, str | list) for item in value):
            return [item if isinstance(item, str) else json.dumps(item) for item in value]
    raise InvalidRequest("'input' must be a string or a non-empty array of strings", param="input")


def embedding_dimensions(body: dict[str, Any], default: int) -> int:
    """Return the requested ``dimensions`` or ``default``."""
    value = body.get("dimensions")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8192:
        raise InvalidRequest("'dimensions' must be an integer from 1 to 8192", param="dimensions")
    return value
