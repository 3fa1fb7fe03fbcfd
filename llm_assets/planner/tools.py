"""Tools: typed Python functions a planner may call, registered with ``@tool``.

A tool takes one pydantic model (its arguments) and returns one (its result). The argument
model's JSON schema and the description are what the planner is shown; every planned call is
validated against that model before anything runs. A planner asset names its allowlist: the
tools it may call, a subset of the registry.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from llm_assets.hashing import canonical_json
from llm_assets.planner.errors import ToolDefinitionError
from llm_assets.resources.llm import strict_schema_problems
from llm_assets.task import strict_json_schema

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_REGISTRY: dict[str, Tool] = {}


@dataclass(frozen=True, eq=False)
class Tool:
    """A registered tool: the function, its typed arguments and result, and what it does.

    Attributes:
        name: Name shown to the planner (letters, digits, ``_``; a valid mapping-key part).
        description: What the tool does, shown to the planner.
        fn: The function; takes an ``args_model`` instance, returns a ``result_model`` one.
        args_model: Pydantic model of the arguments.
        result_model: Pydantic model of the result.
        side_effects: True when calling it changes the world (sends, writes, charges): each
            call then gets an idempotency key, recorded in the ledger once it succeeded, so a
            retried step or a re-execution does not repeat the effect.
        version: Bump it when the tool's behaviour changes; part of the asset's code version
            and of the idempotency key.
    """

    name: str
    description: str
    fn: Callable[[Any], Any] = field(repr=False)
    args_model: type[BaseModel] = field(repr=False)
    result_model: type[BaseModel] = field(repr=False)
    side_effects: bool = False
    version: str = "1"

    def __call__(self, args: Any) -> Any:
        """Calls the function directly, as if it were not decorated."""
        return self.fn(args)

    @property
    def parameters(self) -> dict[str, Any]:
        """The arguments' JSON schema, in the strict form structured outputs accept."""
        return strict_json_schema(self.args_model)

    def spec(self) -> dict[str, Any]:
        """The tool as an OpenAI function definition, offered in the planner's request."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": True,
            },
        }

    @property
    def fingerprint(self) -> str:
        """What changes this tool's calls: name, version, schemas and side effects."""
        spec = {
            "name": self.name,
            "version": self.version,
            "args": self.parameters,
            "result": self.result_model.model_json_schema(),
            "side_effects": self.side_effects,
        }
        return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]

    def check_arguments(self, text: str) -> dict[str, Any]:
        """Validates the planner's argument text; returns the arguments as plain JSON values.

        Raises:
            ValueError: The text is not a JSON object, has unknown keys, or fails the model.
        """
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"arguments are not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments must be a JSON object, not {type(value).__name__}")
        unknown = sorted(set(value) - set(self.args_model.model_fields))
        if unknown:
            raise ValueError(
                f"unknown argument(s) {', '.join(unknown)}; "
                f"'{self.name}' takes {', '.join(self.args_model.model_fields) or 'none'}"
            )
        try:
            return self.args_model.model_validate(value).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()[:3]
            )
            raise ValueError(
                f"arguments do not match {self.args_model.__name__}: {problems}"
            ) from None

    def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Runs the tool on validated arguments; returns the result as plain JSON values."""
        result = self.fn(self.args_model.model_validate(arguments))
        if not isinstance(result, self.result_model):
            result = self.result_model.model_validate(result)
        return result.model_dump(mode="json")


def _models_of(fn: Callable[..., Any]) -> tuple[type[BaseModel], type[BaseModel]]:
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters)
    if len(params) != 1:
        raise ToolDefinitionError(
            f"tool function '{fn.__name__}' must take exactly one argument (a pydantic model "
            f"of its arguments); it takes {len(params)}"
        )
    args_model, result_model = hints.get(params[0]), hints.get("return")
    for what, model in (("argument", args_model), ("return", result_model)):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ToolDefinitionError(
                f"tool function '{fn.__name__}' needs a pydantic BaseModel {what} annotation, "
                f"got {model!r}"
            )
    return typing.cast(type[BaseModel], args_model), typing.cast(type[BaseModel], result_model)


def tool(
    fn: Callable[[Any], Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effects: bool = False,
    version: str = "1",
) -> Any:
    """Registers a typed function as a tool planners may call (when an asset allowlists it).

    Args:
        fn: The function: one argument annotated with a pydantic model, a pydantic return.
        name: Tool name; defaults to the function's name.
        description: Shown to the planner; defaults to the docstring's first paragraph.
        side_effects: The tool changes the world: its calls get idempotency keys recorded in
            the ledger, so retries and re-executions do not repeat a completed effect.
        version: Bump when the tool's behaviour changes.

    Returns:
        The ``Tool`` (still callable like the function).

    Raises:
        ToolDefinitionError: Bad name, missing annotations, arguments the provider's strict
            mode refuses (named by field), or the name is taken by another function.

    Examples:
        >>> from pydantic import BaseModel
        >>> class WordsIn(BaseModel):
        ...     text: str
        >>> class WordsOut(BaseModel):
        ...     words: int
        >>> @tool
        ... def count_words(args: WordsIn) -> WordsOut:
        ...     '''Counts the words of a text.'''
        ...     return WordsOut(words=len(args.text.split()))
        >>> count_words.name, count_words.description
        ('count_words', 'Counts the words of a text.')
        >>> count_words.run({"text": "a b c"})
        {'words': 3}
    """

    def register(func: Callable[[Any], Any]) -> Tool:
        tool_name = name or func.__name__
        if not _NAME.match(tool_name):
            raise ToolDefinitionError(
                f"tool name {tool_name!r} must start with a letter and hold only letters, "
                "digits and '_' (at most 64); pass name=... to @tool"
            )
        args_model, result_model = _models_of(func)
        problems = strict_schema_problems(strict_json_schema(args_model), args_model.__name__)
        if problems:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            raise ToolDefinitionError(
                f"tool '{tool_name}': the provider's strict function calling would refuse its "
                f"arguments {args_model.__name__} ({len(problems)} problem(s)):\n{listed}"
            )
        text = description or inspect.getdoc(func) or ""
        made = Tool(
            name=tool_name,
            description=text.split("\n\n")[0].strip() or f"Calls {tool_name}.",
            fn=func,
            args_model=args_model,
            result_model=result_model,
            side_effects=side_effects,
            version=version,
        )
        known = _REGISTRY.get(tool_name)
        if known is not None and _origin(known.fn) != _origin(func):
            raise ToolDefinitionError(
                f"tool name '{tool_name}' is already registered by {_origin(known.fn)}; "
                f"give {_origin(func)} another name with @tool(name=...)"
            )
        _REGISTRY[tool_name] = made
        return made

    return register(fn) if fn is not None else register


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def registered_tool(name: str) -> Tool | None:
    """The registered tool called ``name``, if any."""
    return _REGISTRY.get(name)


def allowlist(tools: Iterable[Tool | str]) -> dict[str, Tool]:
    """The allowlist of a planner asset, by name, from tools or registered names.

    Raises:
        ToolDefinitionError: A name is not registered, or the list is empty.
    """
    chosen: dict[str, Tool] = {}
    for item in tools:
        found = item if isinstance(item, Tool) else _REGISTRY.get(item)
        if found is None:
            known = ", ".join(sorted(_REGISTRY)) or "none"
            raise ToolDefinitionError(
                f"no tool named {item!r} is registered (registered: {known}); decorate the "
                "function with @llm_assets.planner.tool and import its module first"
            )
        chosen[found.name] = found
    if not chosen:
        raise ToolDefinitionError("a planner asset needs at least one tool in `tools`")
    return chosen
