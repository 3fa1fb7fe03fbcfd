"""HTTP routes: the OpenAI subset the simulator speaks, plus the ``/_simulator`` control plane.

All state lives on one event loop; handlers never ``await`` between reading and updating a
counter or a rate window, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llm_assets.simulator import errors, parsing, responses
from llm_assets.simulator.batches import BatchesAPI
from llm_assets.simulator.chat import REFUSED, ChatCall, refusal
from llm_assets.simulator.config import DEFAULT_MODELS, SimulatorConfig
from llm_assets.simulator.faults import Marker, choose_fault, draw_latency_s
from llm_assets.simulator.limits import BucketLimiter, CombinedLimiter, Decision, RateLimiter
from llm_assets.simulator.parsing import InvalidRequest
from llm_assets.simulator.prompt_cache import PromptCache
from llm_assets.simulator.responses import (
    DROPPED,
    SCOPE_KEY,
    DropConnection,
    install_drop_log_filter,
    json_response,
)
from llm_assets.simulator.stats import SimulatorStats
from llm_assets.simulator.tokens import estimate_tokens
from llm_assets.simulator.vectors import embed, to_base64


class SimulatorApp:
    """ASGI application of the simulator; serve it with uvicorn.

    Args:
        config: Initial knobs; defaults to ``SimulatorConfig()``.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.stats = SimulatorStats()
        self.prompt_cache = PromptCache()
        self.limiter = RateLimiter()
        self.buckets = BucketLimiter()
        self.combined = CombinedLimiter()
        self.models_seen: dict[str, None] = dict.fromkeys(DEFAULT_MODELS)
        self._request_ids = itertools.count(1)
        self.batches = BatchesAPI(lambda: self.config, self._authenticate)
        not_found = {404: self._unknown_url, 405: self._unknown_url}
        self._router = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{model:path}", self.retrieve_model, methods=["GET"]),
                Route("/_simulator/stats", self.get_stats, methods=["GET"]),
                Route("/_simulator/config", self.get_config, methods=["GET"]),
                Route("/_simulator/config", self.update_config, methods=["POST"]),
                Route("/_simulator/reset", self.reset, methods=["POST"]),
                *self.batches.routes(),
            ],
            exception_handlers=not_found,  # type: ignore[arg-type]
        )
        install_drop_log_filter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        """Serve one ASGI connection scope, counting ``/v1/*`` requests and their statuses."""
        if scope["type"] != "http":
            await self._router(scope, receive, send)
            return None
        state = {"drop": False}
        scope[SCOPE_KEY] = state
        counted = scope["path"].startswith("/v1/")
        stats = self.stats  # a request counts where it began, even across a reset
        if counted:
            stats.requests_total += 1

        async def counting_send(message: Any) -> None:
            if counted and message["type"] == "http.response.start":
                stats.status_counts[str(message["status"])] += 1
            await send(message)

        await self._router(scope, receive, counting_send)
        # uvicorn closes the transport without a response when an app returns a value.
        return DROPPED if state["drop"] else None

    # OpenAI endpoints

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        stats = self.stats  # see __call__
        stats.chat_requests += 1
        key, auth_failure = self._authenticate(request)
        if auth_failure is not None:
            return auth_failure
        now = time.monotonic()
        try:
            body = parsing.parse_body(await request.body())
            call = ChatCall.read(body, self.config.accepted_params, self.config.accepted_models)
        except REFUSED as exc:
            return self._refuse(*refusal(exc), key, now)
        body_hash = parsing.digest(body)
        if body_hash in stats.answered:
            stats.duplicate_requests += 1
        self.models_seen.setdefault(call.model)
        context_window = self.config.context_window_for(call.model)
        if self.config.insufficient_quota:
            return self._refuse(429, errors.insufficient_quota(), key, now)
        if call.tokens_asked > context_window:
            error = errors.context_length_exceeded(
                context_window, call.prompt_tokens, call.max_tokens or 0
            )
            return self._refuse(400, error, key, now)
        admitted = self._admit(key, call.model, call.tokens_asked, now)
        if isinstance(admitted, Response):
            return admitted
        fault = await self._fault_and_delay(body_hash, call.marker, chat=True)
        if fault in ("500", "503", "disconnect"):
            return self._transport_fault(fault, admitted)
        if fault == "context_length":
            error = errors.context_length_exceeded(context_window, context_window + 1, 0)
            return json_response(error, 400, admitted)
        cached_tokens = self.prompt_cache.read(call.prefixes)
        reply, completion_tokens = call.reply(admitted["x-request-id"], fault, cached_tokens)
        stats.chat_completions += 1
        stats.prompt_tokens += call.prompt_tokens
        stats.cached_tokens += cached_tokens
        stats.completion_tokens += completion_tokens
        stats.answered.add(body_hash)
        return json_response(reply, headers=admitted)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        stats = self.stats  # see __call__
        stats.embedding_requests += 1
        key, auth_failure = self._authenticate(request)
        if auth_failure is not None:
            return auth_failure
        now = time.monotonic()
        try:
            body = parsing.parse_body(await request.body())
            model = parsing.require_model(body)
            inputs = parsing.embedding_inputs(body)
            dimensions = parsing.embedding_dimensions(body, self.config.embedding_dimensions)
        except InvalidRequest as exc:
            return self._refuse(400, errors.invalid_request(str(exc), exc.param), key, now)
        self.models_seen.setdefault(model)
        if self.config.insufficient_quota:
            return self._refuse(429, errors.insufficient_quota(), key, now)
        prompt_tokens = sum(estimate_tokens(text) for text in inputs)
        admitted = self._admit(key, model, prompt_tokens, now)
        if isinstance(admitted, Response):
            return admitted
        fault = await self._fault_and_delay(parsing.digest(body), None, chat=False)
        if fault in ("500", "503", "disconnect"):
            return self._transport_fault(fault, admitted)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embed(text, model, dimensions)
            encoded: Any = to_base64(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        stats.embeddings += 1
        stats.prompt_tokens += prompt_tokens
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return json_response(
            {"object": "list", "data": data, "model": model, "usage": usage}, headers=admitted
        )

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: the default simulated models plus every model requested so far."""
        _, auth_failure = self._authenticate(request)
        if auth_failure is not None:
            return auth_failure
        data = [responses.model_card(model) for model in self.models_seen]
        return json_response({"object": "list", "data": data})

    async def retrieve_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: every model name is accepted."""
        _, auth_failure = self._authenticate(request)
        if auth_failure is not None:
            return auth_failure
        return json_response(responses.model_card(request.path_params["model"]))

    # Control plane

    async def get_stats(self, request: Request) -> Response:
        """``GET /_simulator/stats``."""
        return json_response(
            {
                **self.stats.snapshot(self.config, self.limiter, self.buckets, self.combined),
                **self.batches.stats(),
            }
        )

    async def get_config(self, request: Request) -> Response:
        """``GET /_simulator/config``: the active knobs, keys masked."""
        return json_response(self.config.public_dump())

    async def update_config(self, request: Request) -> Response:
        """``POST /_simulator/config``: change some knobs, answer with all of them."""
        try:
            updates = parsing.parse_body(await request.body())
            merged = {**self.config.model_dump(), **updates}
            self.config = SimulatorConfig.model_validate(merged)
        except InvalidRequest as exc:
            return json_response(errors.invalid_request(str(exc)), 400)
        except ValidationError as exc:
            message = f"invalid simulator config: {exc.errors(include_url=False)}"
            return json_response(errors.invalid_request(message), 400)
        return json_response(self.config.public_dump())

    async def reset(self, request: Request) -> Response:
        """``POST /_simulator/reset``: zero counters and rate windows, keep the config.

        Requests still being answered keep counting in the counters they began with, so a
        request left waiting by an earlier test never shows up in the next one's figures.
        """
        self.stats = SimulatorStats()
        self.prompt_cache.clear()
        self.limiter.reset()
        self.buckets.reset()
        self.combined.reset()
        self.batches.reset_counters()
        return json_response({"reset": True})

    # Helpers

    def _authenticate(self, request: Request) -> tuple[str, Response | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if token and (not self.config.api_keys or token in self.config.api_keys):
            return token, None
        return token, json_response(errors.invalid_api_key(token), 401)

    def _next_request_id(self) -> str:
        return f"req_sim_{next(self._request_ids)}"

    def _refuse(self, status: int, body: dict[str, Any], key: str, now: float) -> Response:
        """Answer an unadmitted request, still reporting the key's rate-limit window."""
        headers = {**self._peek(key, now).headers, "x-request-id": self._next_request_id()}
        return json_response(body, status, headers)

    def _peek(self, key: str, now: float) -> Decision:
        c = self.config
        if c.limit_mode != "window":
            buckets = self.combined if c.limit_mode == "combined" else self.buckets
            return buckets.peek(
                key, now, rpm=c.rpm, tpm=c.tpm, window_s=c.window_s, burst_s=c.burst_s
            )
        return self.limiter.peek(key, now, rpm=c.rpm, tpm=c.tpm, window_s=c.window_s)

    def _admit(self, key: str, model: str, cost: int, now: float) -> dict[str, str] | Response:
        """Charge the key's window or buckets; return the response headers, or the 429 to send."""
        config = c = self.config
        if c.limit_mode != "window":
            buckets = self.combined if c.limit_mode == "combined" else self.buckets
            decision = buckets.admit(
                key, cost, now, rpm=c.rpm, tpm=c.tpm, window_s=c.window_s, burst_s=c.burst_s
            )
        else:
            decision = self.limiter.admit(key, cost, now, rpm=c.rpm, tpm=c.tpm, window_s=c.window_s)
        headers = {**decision.headers, "x-request-id": self._next_request_id()}
        if decision.admitted:
            return headers
        self.stats.rate_limited += 1
        kind = decision.limited_by or "requests"
        limit = config.rpm if kind == "requests" else config.tpm
        requested = 1 if kind == "requests" else cost
        wait = decision.retry_after_s
        wait_text = None
        if wait is not None:
            wait_ms = max(1, math.ceil(wait * 1000))
            wait_text = f"{wait_ms / 1000:g}s"
            headers["retry-after"] = f"{wait_ms / 1000:g}"
            headers["retry-after-ms"] = str(wait_ms)
        body = errors.rate_limit_exceeded(kind, model, limit, decision.used, requested, wait_text)
        return json_response(body, 429, headers)

    async def _fault_and_delay(
        self, body_hash: str, marker: Marker | None, *, chat: bool
    ) -> str | None:
        """Pick this admission's fault, sleep its latency, and count the fault."""
        seen = self.stats.times_admitted.get(body_hash, 0)
        self.stats.times_admitted[body_hash] = seen + 1
        rng = random.Random(f"{self.config.seed}:{body_hash}:{seen}")
        admission = self.stats.admissions
        self.stats.admissions += 1
        fault = choose_fault(self.config, rng, marker, seen, chat=chat, admission=admission)
        if fault is not None:
            self.stats.faults_injected[fault] += 1
        delay = draw_latency_s(self.config, rng)
        if fault == "slow":
            delay += self.config.slow_ms / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        return fault

    @staticmethod
    def _transport_fault(fault: str, headers: dict[str, str]) -> Response:
        if fault == "disconnect":
            return DropConnection()
        status = int(fault)
        return json_response(errors.server_error(status), status, headers)

    @staticmethod
    async def _unknown_url(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        message = f"Invalid URL ({request.method} {request.url.path})"
        return json_response(errors.error_body(message, "invalid_request_error"), status)
