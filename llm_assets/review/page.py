"""The review page: open reviews per gate and partition, and a form per flagged row.

A Starlette app rendering Jinja2 templates (``templates/``). Reading needs nothing; deciding
needs the reviewer to sign in with the review token (``LLM_ASSETS_REVIEW_TOKEN``, read through
``dg.EnvVar``): without a token configured the page is read-only. A signed-in session is a
signed cookie naming the reviewer; every form carries a CSRF token bound to that session, and
the revision of the row it was shown, so a replayed form or a row decided meanwhile is refused.
Every refusal is a sentence on the page, and nothing is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode

import dagster as dg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from llm_assets.resources.errors import UserError
from llm_assets.resources.review import ReviewItem, ReviewRefused
from llm_assets.review.desk import ReviewDesk
from llm_assets.review.form import edit_fields, read_edit

TOKEN_ENV = "LLM_ASSETS_REVIEW_TOKEN"
PAGE_SIZE = 50
_COOKIE = "llm_assets_review"
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def configured_token() -> str | None:
    """The review token from the environment (``LLM_ASSETS_REVIEW_TOKEN``), or None."""
    value = dg.EnvVar(TOKEN_ENV).get_value()
    return value or None


class _Sessions:
    """Signed session cookies and the CSRF tokens bound to them."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        # A new key per process: restarting the page signs everyone out.
        self._key = hashlib.sha256((token or "").encode() + secrets.token_bytes(32)).digest()

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def cookie(self, reviewer: str) -> str:
        nonce = secrets.token_hex(16)
        body = f"{quote(reviewer)}|{nonce}"
        return f"{body}|{self._sign(body)}"

    def reviewer(self, request: Request) -> tuple[str, str] | None:
        """``(reviewer, csrf token)`` of a valid session, or None."""
        raw = request.cookies.get(_COOKIE, "")
        body, _, signature = raw.rpartition("|")
        if not self.token or not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        name, _, nonce = body.partition("|")
        return unquote(name), self._sign(f"csrf|{nonce}")

    def token_matches(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), (self.token or "").encode())


def review_app(desk: ReviewDesk, *, token: str | None = None) -> Starlette:
    """The review page's ASGI app.

    Args:
        desk: The gates and their decisions.
        token: The review token; ``None`` serves the page read-only.

    Returns:
        A Starlette app (serve it with uvicorn, or test it with ``starlette.testclient``).

    Examples:
        .. code-block:: python

            import uvicorn

            from llm_assets.review import ReviewDesk
            from llm_assets.review.page import configured_token, review_app
            from reviews_example.definitions import defs

            uvicorn.run(review_app(ReviewDesk.of(defs), token=configured_token()), port=3100)
    """
    sessions = _Sessions(token)

    def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        session = sessions.reviewer(request)
        html = _TEMPLATES.get_template(name).render(
            reviewer=session[0] if session else None,
            csrf=session[1] if session else "",
            read_only=token is None,
            request_path=request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    async def index(request: Request) -> Response:
        rounds = desk.rounds()
        return render(request, "index.html", rounds=rounds, gates=sorted(desk.gates))

    async def partition_page(request: Request) -> Response:
        return _partition(request, render, desk)

    async def decide(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        session = sessions.reviewer(request)
        refusal = None
        if token is None:
            refusal = f"this page is read-only: start it with {TOKEN_ENV} set to decide here"
        elif session is None:
            refusal = "sign in with the review token to decide; nothing recorded"
        elif not hmac.compare_digest(form.get("csrf", ""), session[1]):
            refusal = "this form did not come from your page session (CSRF check); nothing recorded"
        if refusal is not None:
            return _partition(request, render, desk, error=refusal, status=403)
        assert session is not None
        try:
            done = _apply(desk, form, session[0])
        except (ReviewRefused, UserError) as exc:
            return _partition(request, render, desk, error=str(exc), status=409)
        target = request.url.path.rsplit("/decide", 1)[0]
        return RedirectResponse(f"{target}?{urlencode({'done': done})}", status_code=303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return render(request, "login.html", next=request.query_params.get("next", "/"))
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        name, given = form.get("reviewer", "").strip(), form.get("token", "")
        target = form.get("next", "/")
        target = target if target.startswith("/") and not target.startswith("//") else "/"
        if token is None or not name or not sessions.token_matches(given):
            problem = (
                "this page is read-only (no review token configured)"
                if token is None
                else "name and review token, please: the token did not match"
            )
            return render(request, "login.html", status=403, error=problem, next=target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(_COOKIE, sessions.cookie(name), httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(_COOKIE)
        return response

    return Starlette(
        routes=[
            Route("/", index),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/review/{asset:path}/{partition}/decide", decide, methods=["POST"]),
            Route("/review/{asset:path}/{partition}", partition_page),
        ]
    )


def _partition(
    request: Request, render: Any, desk: ReviewDesk, *, error: str | None = None, status: int = 200
) -> Response:
    asset = request.path_params["asset"]
    partition = request.path_params["partition"]
    partition_key = None if partition == "-" else partition
    try:
        gate = desk.gate(asset)
    except UserError as exc:
        return render(request, "error.html", status=404, error=str(exc))
    shown = request.query_params.get("status", "pending")
    page = max(1, int(request.query_params.get("page", "1") or 1))
    status_filter = None if shown == "all" else shown
    items = desk.items(
        asset, partition_key, status=status_filter, limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
    )  # fmt: skip
    fields = edit_fields(gate.task.output_schema)
    return render(
        request,
        "partition.html",
        status=status,
        asset=asset,
        partition=partition,
        partition_key=partition_key,
        counts=desk.counts(asset, partition_key),
        items=[_view(desk, item, fields) for item in items[:PAGE_SIZE]],
        more=len(items) > PAGE_SIZE,
        page=page,
        shown=shown,
        error=error,
        done=request.query_params.get("done"),
        fields=fields,
    )


def _view(desk: ReviewDesk, item: ReviewItem, fields: list[dict[str, Any]]) -> dict[str, Any]:
    output = item.row.get("output", {})
    answer = {f["name"]: output.get(f["name"]) for f in fields}
    partition = f" --partition {item.partition_key}" if item.partition_key else ""
    return {
        "item": item,
        "inputs": item.row.get("inputs", {}),
        "answer": json.dumps(answer, indent=2, ensure_ascii=False),
        "answer_values": answer,
        "edited": json.dumps(item.value, indent=2, ensure_ascii=False) if item.value else None,
        "prompt": desk.prompt(item),
        "history": desk.history(item) if item.revision else [],
        "trace": f"python -m llm_assets trace {item.asset_key}{partition} --row {item.row_id}",
        "status": output.get("llm_status"),
        "error": output.get("llm_error"),
    }


def _apply(desk: ReviewDesk, form: dict[str, str], reviewer: str) -> str:
    item_id = form.get("item_id", "")
    try:
        seen = {
            "seen_revision": int(form.get("revision", "0")),
            "task_version": form.get("version"),
        }
    except ValueError:
        raise ReviewRefused("the form's revision is not a number; reload the page") from None
    action = form.get("action")
    if action == "approve":
        desk.approve(item_id, reviewer, comment=form.get("comment") or None, **seen)
    elif action == "reject":
        desk.reject(item_id, reviewer, form.get("reason", ""), **seen)
    elif action == "edit":
        item = desk.item(item_id)
        schema = desk.gate(item.asset_key).task.output_schema
        desk.edit(item_id, reviewer, read_edit(schema, form, item.row_id), **seen)
    else:
        raise ReviewRefused(f"unknown action {action!r}: approve, reject or edit")
    return f"{action}:{item_id}"
