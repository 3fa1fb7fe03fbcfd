"""The description an ``llm_asset`` shows in the UI: what it asks, of which model, for what.

Rendered as Markdown: an introduction, the model and endpoint, the system and user prompt
templates, and the output schema as JSON Schema. ``resolve_model_versions`` renders it again
once the ``LLMResource`` is known, so the model and endpoint named are the ones used.
"""

from __future__ import annotations

import json

from llm_assets.task import LLMTask

RESOURCE_MODEL = "(LLMResource.model)"
RESOURCE_ENDPOINT = "(LLMResource.base_url)"


def task_description(
    task: LLMTask,
    *,
    upstream: str,
    intro: str | None = None,
    model: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Markdown describing ``task`` for the asset's description.

    Args:
        task: The task the asset answers.
        upstream: The upstream asset, as a user string.
        intro: The user's own description, shown first; a default sentence otherwise.
        model: The model sent; defaults to the task's, else "(LLMResource.model)".
        endpoint: The endpoint kind (``openai``, ``vllm``, ...), when known.

    Returns:
        The Markdown text.

    Examples:
        >>> from pydantic import BaseModel
        >>> class Label(BaseModel):
        ...     label: str
        >>> task = LLMTask(name="t", user_prompt="Text: {text}", output_schema=Label)
        >>> text = task_description(task, upstream="texts", model="gpt-4o-mini")
        >>> "`gpt-4o-mini`" in text and "Text: {text}" in text and '"label"' in text
        True
    """
    shown_model = model or task.model or RESOURCE_MODEL
    lines = [
        intro or f"LLM task `{task.name}`: one request per row of `{upstream}`.",
        "",
        f"**Model:** `{shown_model}` · **Endpoint:** `{endpoint or RESOURCE_ENDPOINT}` · "
        f"**Task version:** `{task.version_for(model) if model else task.version}`",
        "",
        "**System prompt**",
        "",
        _fenced(task.system_prompt or "(none)", "text"),
        "",
        "**User prompt**",
        "",
        _fenced(task.user_prompt, "text"),
        "",
        f"**Output schema** (`{task.output_schema.__name__}`)",
        "",
        _fenced(json.dumps(task.json_schema, indent=2, ensure_ascii=False), "json"),
    ]
    return "\n".join(lines)


def _fenced(text: str, language: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}"
