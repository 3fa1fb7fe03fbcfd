"""``LLMTask``: what one LLM step asks, of which columns, answered in which shape."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llm_assets.hashing import canonical_json, canonical_messages
from llm_assets.resources.errors import SchemaError
from llm_assets.resources.llm import (
    estimate_prompt_tokens,
    is_reasoning_model,
    strict_schema_problems,
    to_strict_json_schema,
)

_SDK_CALL_OPTIONS = frozenset({"extra_body", "extra_headers", "extra_query", "timeout"})


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form OpenAI's strict structured outputs take.

    The ``openai`` SDK's rules (``client.chat.completions.parse`` sends the same): every
    object gets ``additionalProperties: false`` and lists all its properties as required,
    ``default: null`` is dropped, a ``$ref`` with a description beside it is unravelled.

    Examples:
        >>> class Out(BaseModel):
        ...     label: str
        >>> strict_json_schema(Out)["additionalProperties"]
        False
    """
    return to_strict_json_schema(model.model_json_schema())


class LLMTask(BaseModel):
    """One LLM step: prompt templates filled from named columns, a typed answer, the model.

    The prompts are ``str.format`` templates whose fields name upstream columns (or names
    mapped to columns with ``columns``). The answer is a pydantic model, sent to the endpoint as
    a JSON-schema structured output and validated on return. ``version`` hashes everything
    that changes the output; ``llm_asset`` uses it as the asset's ``code_version``, so editing a
    prompt marks the asset stale in the Dagster UI.

    Examples:
        .. code-block:: python

            from typing import Literal
            from pydantic import BaseModel
            from llm_assets import LLMTask

            class Sentiment(BaseModel):
                label: Literal["positive", "neutral", "negative"]

            task = LLMTask(
                name="sentiment",
                system_prompt="Classify the sentiment of a product review.",
                user_prompt="Review: {body}",
                output_schema=Sentiment,
                id_column="review_id",
            )
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str = Field(description="Short name; also the structured-output schema name.")
    user_prompt: str = Field(description="User message template, e.g. 'Review: {body}'.")
    output_schema: type[BaseModel] = Field(description="Pydantic model of one answer.")
    system_prompt: str = Field(default="", description="System message template.")
    model: str | None = Field(
        default=None, description="Model name; None uses LLMResource.model at run time."
    )
    temperature: float | None = Field(default=0.0, description="Sampling temperature.")
    max_output_tokens: int = Field(default=512, description="Cap on completion tokens.")
    expected_output_tokens: int | None = Field(
        default=None,
        description=(
            "Typical answer length, for cost estimates before sending; None assumes "
            "max_output_tokens (an upper bound). Not part of the version."
        ),
    )
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="Request field for the cap; reasoning models need max_completion_tokens.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Other request fields, sent as top-level JSON: top_p, seed, or a server's "
        "own such as vLLM's top_k.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Template variable -> upstream column name."
    )
    id_column: str | None = Field(
        default=None, description="Upstream column that identifies a row; copied to output."
    )
    strict: bool = Field(default=True, description="Send the schema in OpenAI strict mode.")
    repair_attempts: int = Field(
        default=1,
        ge=0,
        description=(
            "Follow-up requests for an answer that does not match the schema; each shows the "
            "model its answer and the validation error."
        ),
    )

    @field_validator("params")
    @classmethod
    def _params_are_body_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        options = sorted(_SDK_CALL_OPTIONS & value.keys())
        if options:
            raise ValueError(
                f"params {options} are options of the openai SDK's create() call, not request "
                "fields: params go into the request body as they are. Put a server's own "
                "fields directly in params (params={'top_k': 20}, not "
                "params={'extra_body': {'top_k': 20}}); set the timeout on LLMResource.timeout_s"
            )
        return value

    @field_validator("output_schema")
    @classmethod
    def _schema_is_model(cls, value: Any) -> type[BaseModel]:
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise TypeError("output_schema must be a pydantic BaseModel subclass")
        return value

    @model_validator(mode="after")
    def _fits_a_pinned_reasoning_model(self) -> LLMTask:
        if self.model and is_reasoning_model(self.model):
            if self.max_tokens_param == "max_tokens":
                raise ValueError(
                    f"model '{self.model}' is a reasoning model: it refuses max_tokens; pass "
                    "max_tokens_param='max_completion_tokens'"
                )
            if self.temperature not in (None, 1, 1.0):
                raise ValueError(
                    f"model '{self.model}' is a reasoning model: it takes only the default "
                    f"temperature, not {self.temperature}; pass temperature=None"
                )
        return self

    @model_validator(mode="after")
    def _schema_is_accepted(self) -> LLMTask:
        if self.strict:
            problems = strict_schema_problems(
                self.json_schema, root_name=self.output_schema.__name__
            )
            if problems:
                listed = "\n".join(f"  - {problem}" for problem in problems)
                raise SchemaError(
                    f"task '{self.name}': the provider's strict structured outputs would refuse "
                    f"output_schema {self.output_schema.__name__} ({len(problems)} problem(s)):\n"
                    f"{listed}\nChange the model, or pass strict=False to send it as a "
                    "non-strict schema"
                )
        return self

    @cached_property
    def template_variables(self) -> tuple[str, ...]:
        """The field names the templates use, in first-use order."""
        names: dict[str, None] = {}
        for template in (self.system_prompt, self.user_prompt):
            for _, field_name, _, _ in string.Formatter().parse(template):
                if field_name:
                    names[field_name.split(".")[0].split("[")[0]] = None
        return tuple(names)

    @cached_property
    def required_columns(self) -> tuple[str, ...]:
        """Upstream columns the task reads, after the ``columns`` mapping."""
        cols = [self.columns.get(v, v) for v in self.template_variables]
        if self.id_column:
            cols.append(self.id_column)
        return tuple(dict.fromkeys(cols))

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """The schema sent as ``response_format``."""
        if self.strict:
            return strict_json_schema(self.output_schema)
        return self.output_schema.model_json_schema()

    @cached_property
    def version(self) -> str:
        """Stable hash of everything that changes the output, with the task's own ``model``.

        A task without a model is answered by the resource's default model: use
        ``version_for(default_model)`` for the version of what is actually sent.
        """
        return self._version(self.model)

    def version_for(self, default_model: str) -> str:
        """The version of what is sent when the resource's default model is ``default_model``.

        Examples:
            >>> class Out(BaseModel):
            ...     label: str
            >>> task = LLMTask(name="t", user_prompt="{x}", output_schema=Out)
            >>> task.version_for("gpt-4o") == task.version_for("gpt-4o-mini")
            False
            >>> pinned = LLMTask(name="t", user_prompt="{x}", output_schema=Out, model="m")
            >>> pinned.version_for("gpt-4o") == pinned.version
            True
        """
        return self._version(self.model or default_model)

    def _version(self, model: str | None) -> str:
        spec = {
            "system_prompt": self.system_prompt,
            "user_prompt": self.user_prompt,
            "model": model,
            "schema": self.json_schema,
            "strict": self.strict,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "max_tokens_param": self.max_tokens_param,
            "params": self.params,
            "columns": self.columns,
            "repair_attempts": self.repair_attempts,
        }
        return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]

    @cached_property
    def _system_is_fixed(self) -> bool:
        return not any(name for _, name, _, _ in string.Formatter().parse(self.system_prompt))

    def render_messages(self, values: Mapping[str, Any]) -> list[dict[str, str]]:
        """Fills the templates from one row's values (keyed by template variable)."""
        messages = []
        if self.system_prompt:
            system = (
                self.system_prompt
                if self._system_is_fixed
                else self.system_prompt.format_map(values)
            )
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": self.user_prompt.format_map(values)})
        return messages

    @cached_property
    def _body_template(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": self.name,
                    "schema": self.json_schema,
                    "strict": self.strict,
                },
            },
            self.max_tokens_param: self.max_output_tokens,
            **self.params,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def request_body(self, messages: list[dict[str, str]], model: str) -> dict[str, Any]:
        """The chat completion request for ``messages``, as sent and as hashed.

        Every body of a task shares its ``response_format`` object; treat bodies as read-only.
        """
        return {"model": model, "messages": messages, **self._body_template}

    @property
    def output_tokens_for_estimates(self) -> int:
        """Output tokens assumed per request when estimating cost."""
        if self.expected_output_tokens is None:
            return self.max_output_tokens
        return min(self.expected_output_tokens, self.max_output_tokens)

    @cached_property
    def _schema_tokens(self) -> int:
        return len(canonical_json(self.json_schema)) // 4

    def estimate_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Local estimate of the prompt tokens of ``messages`` plus the schema."""
        return estimate_prompt_tokens(messages) + self._schema_tokens

    def request_key(self, body: dict[str, Any]) -> str:
        """``request_hash(body)`` for a body made by ``request_body``, reusing the shared part.

        Examples:
            >>> class Out(BaseModel):
            ...     label: str
            >>> task = LLMTask(name="t", user_prompt="{x}", output_schema=Out)
            >>> body = task.request_body([{"role": "user", "content": "hi"}], "m")
            >>> from llm_assets.hashing import request_hash
            >>> task.request_key(body) == request_hash(body)
            True
        """
        model = body["model"]
        shared = self._shared_digests.get(model)
        if shared is None:
            rest = {k: v for k, v in body.items() if k != "messages"}
            shared = hashlib.sha256(canonical_json(rest).encode())
            self._shared_digests[model] = shared
        digest = shared.copy()
        digest.update(b"\n" + canonical_messages(body["messages"]).encode())
        return digest.hexdigest()

    @cached_property
    def _shared_digests(self) -> dict[str, Any]:
        return {}
