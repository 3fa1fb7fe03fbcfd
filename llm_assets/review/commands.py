"""``python -m llm_assets review list|approve|reject|edit|serve``: decisions from a shell.

The same ``ReviewDesk`` as the page: the same checks, the same refusals. ``--reviewer`` (or
``$LLM_ASSETS_REVIEWER``, else the login name) is kept with each decision.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import dagster as dg
import uvicorn

from llm_assets.resources.errors import UserError
from llm_assets.review.desk import ReviewDesk
from llm_assets.review.gate import DEFAULT_REVIEW_URL, REVIEW_URL_ENV
from llm_assets.review.page import configured_token, review_app

Load = Callable[[argparse.Namespace], dg.Definitions]


def add_review_parser(sub: Any, add_location: Callable[[Any], None]) -> None:
    """Adds ``review`` and its actions to the ``python -m llm_assets`` parser."""
    review = sub.add_parser(
        "review",
        help="list flagged rows and decide them, or serve the review page",
        description="Human review of the rows review gates flagged (llm_asset(..., "
        "review=ReviewPolicy(...))). Decisions are kept in the gate's ledger database, keyed by "
        "the content they judged.",
    )
    actions = review.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="open reviews, or one partition's rows")
    listing.add_argument("--asset", help="a gate asset (default: every gate's open reviews)")
    listing.add_argument("--partition", help="its partition (with --asset)")
    listing.add_argument(
        "--status", default="pending", help="pending (default), approved, edited, rejected, all"
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (
        ("approve", "approve a row's answer"),
        ("reject", "reject a row (it goes to the reviewed asset's quarantine)"),
        ("edit", "replace a row's answer (validated against the task's schema)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("item_id", help="the row's review id (from `review list`)")
        action.add_argument("--reviewer", help="who decides (default $LLM_ASSETS_REVIEWER, login)")
        action.add_argument(
            "--revision", type=int, default=0, help="the revision you saw (to change a decision)"
        )
        if name == "reject":
            action.add_argument("--reason", required=True, help="why (kept in the quarantine)")
        elif name == "edit":
            action.add_argument(
                "--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                help="an answer field (JSON values parsed, else text); fields not set keep "
                "the model's value",
            )  # fmt: skip
        else:
            action.add_argument("--comment", help="a note kept with the decision")
    serve = actions.add_parser("serve", help="serve the review page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3100)
    for action in actions.choices.values():
        add_location(action)


def run_review(args: argparse.Namespace, load: Load) -> int:
    """Runs a ``review`` action; returns the exit status (refusals raise ``UserError``)."""
    desk = ReviewDesk.of(load(args))
    if args.action == "list":
        return _list(desk, args)
    if args.action == "serve":
        return _serve(desk, args)
    reviewer = args.reviewer or os.environ.get("LLM_ASSETS_REVIEWER") or getpass.getuser()
    seen = {"seen_revision": args.revision}
    if args.action == "approve":
        record = desk.approve(args.item_id, reviewer, comment=args.comment, **seen)
    elif args.action == "reject":
        record = desk.reject(args.item_id, reviewer, args.reason, **seen)
    else:
        item = desk.item(args.item_id)
        fields = desk.gate(item.asset_key).task.output_schema.model_fields
        value = {name: item.row.get("output", {}).get(name) for name in fields}
        value.update(_sets(args.sets, set(fields)))
        record = desk.edit(args.item_id, reviewer, value, **seen)
    print(f"{record.decision} {args.item_id} by {record.reviewer} (revision {record.revision})")
    return 0


def _sets(sets: list[str], fields: set[str]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for text in sets:
        name, sep, raw = text.partition("=")
        if not sep or name not in fields:
            raise UserError(
                f"--set takes FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}, "
                f"not {text!r}"
            )
        try:
            value[name] = json.loads(raw)
        except ValueError:
            value[name] = raw
    return value


def _list(desk: ReviewDesk, args: argparse.Namespace) -> int:
    if args.asset is None:
        rounds = [r for r in desk.rounds() if r.undecided or args.status == "all"]
        if args.json:
            print(json.dumps([vars(r) for r in rounds], default=str, indent=2))
        for r in [] if args.json else rounds:
            print(
                f"{r.asset_key}  {r.partition_key or '-'}  {r.undecided} waiting of "
                f"{r.flagged} flagged  (run {r.run_id[:8]})"
            )
        if not rounds and not args.json:
            print("no rows wait for review")
        return 0
    status = None if args.status == "all" else args.status
    items = desk.items(
        args.asset, args.partition, status=status, limit=args.limit, offset=args.offset
    )
    if args.json:
        print(json.dumps([vars(i) for i in items], default=str, indent=2))
        return 0
    for item in items:
        print(f"{item.item_id}  row {item.row_id}  {item.status}  ({item.reason})")
    base = os.environ.get(REVIEW_URL_ENV, DEFAULT_REVIEW_URL)
    print(f"{len(items)} row(s); decide with `review approve|reject|edit ID` or on {base}")
    return 0


def _serve(desk: ReviewDesk, args: argparse.Namespace) -> int:
    token = configured_token()
    mode = (
        "decisions need the review token" if token else "read-only: LLM_ASSETS_REVIEW_TOKEN unset"
    )
    print(f"review page on http://{args.host}:{args.port} ({mode})", file=sys.stderr)
    uvicorn.run(review_app(desk, token=token), host=args.host, port=args.port, log_level="warning")
    return 0
