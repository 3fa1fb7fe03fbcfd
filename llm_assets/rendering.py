"""Rendering: one request per upstream row, hashed into its ledger key."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llm_assets.hashing import request_hash
from llm_assets.resources.errors import MissingColumnsError
from llm_assets.resources.llm import ChatRequest
from llm_assets.task import LLMTask

ROW_INDEX_COLUMN = "row_index"


#: Rows rendered, looked up and settled together: bounds the request bodies and ledger entries
#: alive at once, whatever the size of the table.
CHUNK_ROWS = 20_000

_NO_EXTRA: dict[str, Any] = {}


@dataclass(slots=True)
class PlannedRow:
    """One upstream row: its id, copied columns, and its request key or pre-send failure."""

    partition: str | None
    row_id: Any
    extra: dict[str, Any]
    key: str | None = None
    pre_error: tuple[str, str] | None = None
    pre_body: dict[str, Any] | None = None


def check_columns(
    task: LLMTask,
    df: pd.DataFrame,
    asset: str,
    upstream: str,
    passthrough: tuple[str, ...] = (),
) -> None:
    """Raises ``MissingColumnsError`` when ``df`` lacks a column the task reads."""
    needed = dict.fromkeys([*task.required_columns, *passthrough])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MissingColumnsError(asset, missing, [str(c) for c in df.columns], upstream)


def over_window(est: int, max_output: int, window: int, model: str) -> tuple[str, str]:
    """The failure of a row whose prompt does not fit the model's context window."""
    return "context_length_exceeded", (
        f"the prompt is about {est} tokens; with max_output_tokens={max_output} it is over "
        f"the {window}-token context window of '{model}'. Shorten the input or use a model "
        "with a larger window"
    )


class BadTextError(ValueError):
    """A cell that cannot be sent as text; ``message`` names the column and the fix."""


def _text(value: Any, column: str) -> Any:
    """The value a template receives for one cell: text is checked, bytes decoded as UTF-8.

    Examples:
        >>> _text("caf\u00e9".encode(), "body")
        'café'
        >>> _text(float("nan"), "body")
        ''
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadTextError(
                f"column '{column}' holds bytes that are not UTF-8 ({exc.reason} at byte "
                f"{exc.start}); decode it upstream with its real encoding, e.g. "
                f"df['{column}'].str.decode('latin-1'), or read the file with that encoding"
            ) from None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadTextError(
                f"column '{column}' holds text that is not valid Unicode ({exc.reason} at "
                f"character {exc.start}, often a file read with errors='surrogateescape'); "
                "read the source with its real encoding or clean the column upstream"
            ) from None
    return value


def plan_rows(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    model: str,
    window: int | None,
    passthrough: tuple[str, ...] = (),
) -> tuple[list[PlannedRow], dict[str, ChatRequest]]:
    """Renders every row of every partition; identical requests share one key.

    Returns:
        The rows in input order, and the unique requests by key.
    """
    rows: list[PlannedRow] = []
    requests: dict[str, ChatRequest] = {}
    for chunk_rows, chunk_requests in plan_chunks(task, frames, model, window, passthrough):
        rows.extend(chunk_rows)
        for key, request in chunk_requests.items():
            requests.setdefault(key, request)
    return rows, requests


def plan_chunks(
    task: LLMTask,
    frames: Mapping[str | None, pd.DataFrame],
    model: str,
    window: int | None,
    passthrough: tuple[str, ...] = (),
    chunk_rows: int = CHUNK_ROWS,
) -> Iterator[tuple[list[PlannedRow], dict[str, ChatRequest]]]:
    """Renders the rows ``chunk_rows`` at a time, in input order.

    Yields:
        Each chunk's rows, and its unique requests by key (a request may recur in later
        chunks; the caller keeps what it needs of earlier ones).
    """
    variables = task.template_variables
    sources = [task.columns.get(v, v) for v in variables]
    for partition, df in frames.items():
        for start in range(0, len(df), chunk_rows):
            part = df.iloc[start : start + chunk_rows]
            ids = (
                part[task.id_column].tolist()
                if task.id_column
                else list(range(start, start + len(part)))
            )
            value_columns = [part[c].tolist() for c in sources]
            extra_columns = [part[c].tolist() for c in passthrough]
            yield _plan(
                task,
                partition,
                ids,
                variables,
                sources,
                value_columns,
                extra_columns,
                model,
                window,
                passthrough,
            )


def _plan(
    task: LLMTask,
    partition: str | None,
    ids: list[Any],
    variables: Sequence[str],
    sources: Sequence[str],
    value_columns: list[list[Any]],
    extra_columns: list[list[Any]],
    model: str,
    window: int | None,
    passthrough: tuple[str, ...],
) -> tuple[list[PlannedRow], dict[str, ChatRequest]]:
    rows: list[PlannedRow] = []
    requests: dict[str, ChatRequest] = {}
    for i, row_id in enumerate(ids):
        extra = (
            {c: col[i] for c, col in zip(passthrough, extra_columns, strict=True)}
            if passthrough
            else _NO_EXTRA
        )
        try:
            values = {
                v: _text(col[i], source)
                for v, source, col in zip(variables, sources, value_columns, strict=True)
            }
        except BadTextError as exc:
            error = ("bad_text", f"row {row_id!r}: {exc}")
            rows.append(PlannedRow(partition, row_id, extra, pre_error=error))
            continue
        messages = task.render_messages(values)
        est = task.estimate_prompt_tokens(messages)
        body = task.request_body(messages, model)
        if window is not None and est + task.max_output_tokens > window:
            error = over_window(est, task.max_output_tokens, window, model)
            rows.append(PlannedRow(partition, row_id, extra, pre_error=error, pre_body=body))
            continue
        key = task.request_key(body)
        if key not in requests:
            requests[key] = ChatRequest(key=key, body=body, est_prompt_tokens=est)
        rows.append(PlannedRow(partition, row_id, extra, key=key))
    return rows, requests


def repair_request(
    task: LLMTask, original: ChatRequest, bad_answer: str, problem: str
) -> ChatRequest:
    """A follow-up request that shows the model its invalid answer and asks again.

    The conversation is the original one plus the bad answer and a correction, so it has its
    own ledger key: a repair is paid for once, like any other request.
    """
    messages = [
        *original.body["messages"],
        {"role": "assistant", "content": bad_answer},
        {
            "role": "user",
            "content": (
                f"That answer is invalid: {problem}. Reply again with only JSON that matches "
                "the required schema exactly."
            ),
        },
    ]
    body = {**original.body, "messages": messages}
    return ChatRequest(
        key=request_hash(body),
        body=body,
        est_prompt_tokens=task.estimate_prompt_tokens(messages),
    )
