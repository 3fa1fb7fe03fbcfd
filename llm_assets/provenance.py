"""The provenance columns every ``llm_asset`` row carries, and how a row's answer is checked."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

STATUS_OK = "ok"
STATUS_FAILED = "failed"

#: Column name -> pandas dtype. The request hash is the ledger key: with it, ``trace`` finds
#: the rendered prompt, the raw response and the run that paid for the call.
PROVENANCE_COLUMNS: dict[str, str] = {
    "llm_status": "string",
    "llm_error": "string",
    "llm_error_class": "string",
    "llm_request_hash": "string",
    "llm_task_version": "string",
    "llm_model": "string",
    "llm_input_tokens": "int64",
    "llm_output_tokens": "int64",
    "llm_cached_input_tokens": "int64",
    "llm_reasoning_tokens": "int64",
    "llm_cost_usd": "float64",
    "llm_latency_s": "float64",
    "llm_cached": "bool",
    "llm_repairs": "int64",
    "llm_paid_by_run_id": "string",
    "llm_batch_id": "string",
    "llm_run_id": "string",
}

#: What each provenance column means, for the table schema the UI shows.
PROVENANCE_DESCRIPTIONS: dict[str, str] = {
    "llm_status": "'ok' (the answer fields are filled) or 'failed' (see llm_error)",
    "llm_error": "why the row failed, after retries and repairs; empty when ok",
    "llm_error_class": "kind of failure: invalid_schema, truncated, retries_exhausted, ...",
    "llm_request_hash": "ledger key of the request: `python -m llm_assets trace <asset> "
    "--partition <key> --row <id>` shows its prompt, raw response and the run that paid",
    "llm_task_version": "version of the task as sent (prompts, schema, model, parameters)",
    "llm_model": "model the API reported for the answer",
    "llm_input_tokens": "prompt tokens billed (repairs included)",
    "llm_output_tokens": "completion tokens billed (repairs included)",
    "llm_cached_input_tokens": "prompt tokens the provider read from its prompt cache, billed at "
    "the cached-input price (included in llm_input_tokens)",
    "llm_reasoning_tokens": "completion tokens a reasoning model spent thinking (included in "
    "llm_output_tokens)",
    "llm_cost_usd": "what the answer cost, in US dollars, when it was paid",
    "llm_latency_s": "seconds the request took when it was paid",
    "llm_cached": "true when the ledger answered, so this materialization paid nothing",
    "llm_repairs": "follow-up requests sent because an answer did not match the schema",
    "llm_paid_by_run_id": "the run that paid for the answer (this run unless cached)",
    "llm_batch_id": "the Batch API batch that answered, in batch mode",
    "llm_run_id": "the run that materialized this row",
}

#: Key under which a ledger entry's response body names the batch that answered it.
BATCH_ID_FIELD = "llm_assets_batch_id"


#: Columns of the quarantine table (after the id column): one row per failed output row.
QUARANTINE_COLUMNS: dict[str, str] = {
    "partition": "string",
    "error_class": "string",
    "error": "string",
    "request": "string",
    "llm_request_hash": "string",
    "repairs": "int64",
    "task_version": "string",
    "run_id": "string",
    "quarantined_at": "datetime64[us, UTC]",
}

#: What each quarantine column means, for the table schema the UI shows.
QUARANTINE_DESCRIPTIONS: dict[str, str] = {
    "partition": "partition of the failed row",
    "error_class": "kind of failure: invalid_schema, truncated, retries_exhausted, ...",
    "error": "why the row failed, after retries and repairs",
    "request": "the request as sent (JSON)",
    "llm_request_hash": "ledger key of the request (`python -m llm_assets trace` finds it)",
    "repairs": "follow-up requests sent because an answer did not match the schema",
    "task_version": "version of the task as sent",
    "run_id": "the run in which the row failed",
    "quarantined_at": "when the row was written here (UTC)",
}


def answer_content(body: dict[str, Any] | None) -> str | None:
    """The text content of a chat completion's first choice, if any.

    Examples:
        >>> answer_content({"choices": [{"message": {"content": "hi"}}]})
        'hi'
    """
    try:
        content = (body or {})["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return content if isinstance(content, str) else None


def parse_answer(
    body: dict[str, Any] | None, schema: type[BaseModel]
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """Extracts and validates the structured answer of a chat completion body.

    Args:
        body: The decoded response body.
        schema: The task's output model.

    Returns:
        ``(fields, None, None)`` when valid, else ``(None, error_class, reason)``.

    Examples:
        >>> class Out(BaseModel):
        ...     label: str
        >>> body = {"choices": [{"message": {"content": '{"label": "x"}'},
        ...                       "finish_reason": "stop"}]}
        >>> parse_answer(body, Out)
        ({'label': 'x'}, None, None)
    """
    try:
        choice = (body or {})["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError):
        return None, "malformed_response", "the response has no choices[0].message"
    finish = choice.get("finish_reason")
    if message.get("refusal"):
        return None, "refusal", f"the model refused: {message['refusal']}"
    if finish == "length":
        return (
            None,
            "truncated",
            (
                "the answer was cut at max_output_tokens (finish_reason=length); raise "
                "max_output_tokens on the task"
            ),
        )
    if finish == "content_filter":
        return None, "content_filter", "the provider's content filter withheld the answer"
    content = message.get("content")
    if not content:
        return None, "empty_answer", f"the response has no content (finish_reason={finish})"
    try:
        answer = schema.model_validate_json(content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:3]
        )
        return (
            None,
            "invalid_schema",
            (
                f"the answer does not match {schema.__name__}: {problems} "
                f"(answer: {content[:200]!r})"
            ),
        )
    return answer.model_dump(mode="json"), None, None


def empty_output_frame(
    id_column: str, schema: type[BaseModel], passthrough: tuple[str, ...] = ()
) -> pd.DataFrame:
    """An empty table with the columns a non-empty one would have."""
    columns: dict[str, pd.Series] = {id_column: pd.Series([], dtype="object")}
    for name in passthrough:
        columns[name] = pd.Series([], dtype="object")
    for name in schema.model_fields:
        columns[name] = pd.Series([], dtype="object")
    for name, dtype in PROVENANCE_COLUMNS.items():
        columns[name] = pd.Series([], dtype=dtype)
    return pd.DataFrame(columns)
