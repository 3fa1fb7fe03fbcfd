"""Answering a chat request, shared by ``POST /v1/chat/completions`` and batch lines.

``ChatCall.read`` checks a request body and prepares its answer; ``ChatCall.reply`` builds the
completion. Between the two the online route admits the request (rate limits, latency, random
faults, counters); ``answer_chat`` answers a batch line without any of that.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llm_assets.simulator import errors, parsing, responses
from llm_assets.simulator.config import SimulatorConfig
from llm_assets.simulator.content import ResponseFormatError, build_content, finish_answer
from llm_assets.simulator.faults import Marker, MarkerError, find_marker
from llm_assets.simulator.parsing import InvalidRequest
from llm_assets.simulator.planner import plan_content
from llm_assets.simulator.prompt_cache import prefix_digests
from llm_assets.simulator.provider import check_chat_body
from llm_assets.simulator.tokens import estimate_prompt_tokens, estimate_tokens

REFUSED = (InvalidRequest, MarkerError, ResponseFormatError)
"""What ``ChatCall.read`` (and ``parsing.parse_body``) raise for a body answered with a 400."""


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One chat request, checked, with its answer's content already built."""

    model: str
    max_tokens: int | None
    marker: Marker | None
    content: str
    prompt_tokens: int
    prefixes: tuple[bytes, ...] = ()
    """Digests of the prompt's cacheable prefixes (``prompt_cache.prefix_digests``)."""

    @classmethod
    def read(
        cls,
        body: dict[str, Any],
        accepted_params: Iterable[str] = (),
        accepted_models: Iterable[str] = (),
    ) -> ChatCall:
        """Check a request body and build its content (equal requests get equal content).

        Args:
            body: The decoded request.
            accepted_params: Top-level fields taken beyond the provider's own.
            accepted_models: Models answered beyond the provider's own.

        Raises:
            InvalidRequest: The body is not a chat request the provider takes
                (``ModelNotFound`` for a model that does not exist).
            MarkerError: A ``[[sim:...]]`` marker is malformed.
            ResponseFormatError: The ``response_format`` cannot be honoured.
        """
        model = parsing.require_model(body)
        check_chat_body(body, accepted_params, accepted_models)
        messages = parsing.chat_messages(body)
        max_tokens = parsing.completion_budget(body)
        user_text = parsing.last_user_text(messages)
        marker = find_marker(user_text)
        response_format = body.get("response_format")
        content_rng = random.Random(parsing.digest([model, messages, response_format]))
        # A planner request (tools offered, a plan schema asked for) gets a plan that uses them.
        content = plan_content(body, messages, content_rng)
        if content is None:
            content = build_content(response_format, user_text, content_rng)
        prompt_tokens = estimate_prompt_tokens(messages)
        prefixes = prefix_digests(model, messages)
        return cls(model, max_tokens, marker, content, prompt_tokens, prefixes)

    @property
    def tokens_asked(self) -> int:
        """The prompt plus the completion budget: what must fit the context window."""
        return self.prompt_tokens + (self.max_tokens or 0)

    def reply(
        self, request_id: str, fault: str | None, cached_tokens: int = 0
    ) -> tuple[dict[str, Any], int]:
        """Return the ``chat.completion`` body with ``fault`` applied, and its completion tokens.

        ``cached_tokens`` of the prompt were read from the prompt cache (``PromptCache``).
        """
        answer = finish_answer(self.content, fault, self.max_tokens)
        completion_tokens = estimate_tokens(answer.content or answer.refusal or "")
        body = responses.chat_completion(
            request_id, self.model, answer, self.prompt_tokens, completion_tokens, cached_tokens
        )
        return body, completion_tokens


def refusal(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and body for one of ``REFUSED``, naming the parameter at fault."""
    param = getattr(exc, "param", None) or (
        "response_format" if isinstance(exc, ResponseFormatError) else "messages"
    )
    status = getattr(exc, "status", 400)
    return status, errors.invalid_request(str(exc), param, getattr(exc, "code", None))


def answer_chat(
    body: dict[str, Any], config: SimulatorConfig, request_id: str
) -> tuple[int, dict[str, Any], int, int]:
    """Answer one chat request exactly as ``POST /v1/chat/completions`` would, minus admission.

    No rate limit, latency, random fault or counter applies; a ``[[sim:NAME]]`` marker does.

    Args:
        body: The request body of one batch line.
        config: Current knobs (context windows).
        request_id: The line's request id; the completion id derives from it.

    Returns:
        ``(status_code, response_body, prompt_tokens, completion_tokens)``; tokens are 0
        unless the status is 200.
    """
    try:
        call = ChatCall.read(body, config.accepted_params, config.accepted_models)
    except REFUSED as exc:
        status, error = refusal(exc)
        return status, error, 0, 0
    fault = call.marker.name if call.marker is not None else None
    window = config.context_window_for(call.model)
    if fault == "context_length" or call.tokens_asked > window:
        asked = window + 1 if fault == "context_length" else call.prompt_tokens
        error = errors.context_length_exceeded(window, asked, 0 if fault else call.max_tokens or 0)
        return 400, error, 0, 0
    if fault in ("500", "503", "disconnect"):
        status = 503 if fault == "503" else 500
        return status, errors.server_error(status), 0, 0
    reply, completion_tokens = call.reply(request_id, fault)
    return 200, reply, call.prompt_tokens, completion_tokens
