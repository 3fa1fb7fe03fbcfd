"""Response bodies in OpenAI's shapes, and the response that drops the connection instead."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_assets.simulator.config import SIMULATOR_NAME
from llm_assets.simulator.content import Answer

SCOPE_KEY = "llm_assets.simulator"
"""ASGI scope entry through which a handler asks ``SimulatorApp`` to drop the connection."""
DROPPED = "llm-assets-simulator dropped this connection on purpose (fault injection)"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise ``data`` compactly, as the OpenAI API does."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers, media_type="application/json")


class DropConnection(Response):
    """Sends nothing and asks ``SimulatorApp`` to make the server close the connection."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Flag the drop instead of sending a response."""
        scope[SCOPE_KEY]["drop"] = True


class _DropLogFilter(logging.Filter):
    """Hides uvicorn's complaint about the deliberate drop; real app errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and DROPPED in record.args)


def install_drop_log_filter() -> None:
    """Silence uvicorn's error line for deliberate drops (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _DropLogFilter) for existing in logger.filters):
        logger.addFilter(_DropLogFilter())


def chat_completion(
    request_id: str,
    model: str,
    answer: Answer,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
) -> dict[str, Any]:
    """Build a ``chat.completion`` object labelled with the simulator's fingerprint.

    Args:
        request_id: The ``x-request-id`` of this response; the completion id derives from it.
        model: The requested model, echoed back.
        answer: Content, refusal and finish reason.
        prompt_tokens: Estimated prompt tokens.
        completion_tokens: Estimated completion tokens.
        cached_tokens: Prompt tokens read from the prompt cache.

    Returns:
        The response body.
    """
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "refusal": answer.refusal,
        "annotations": [],
    }
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": answer.finish_reason,
    }
    return {
        "id": "chatcmpl-" + request_id.removeprefix("req_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            # Always sent by the provider, zero when nothing applies.
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": SIMULATOR_NAME,
    }


def model_card(model: str) -> dict[str, Any]:
    """Build a ``model`` object owned by the simulator."""
    return {"id": model, "object": "model", "created": 0, "owned_by": SIMULATOR_NAME}
