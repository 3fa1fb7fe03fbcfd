"""The answer model of a YAML-declared task: a dotted path to a pydantic model, or JSON Schema.

A JSON Schema becomes a pydantic model built with ``pydantic.create_model``, so a component's
task is an ordinary ``LLMTask``: its answers are validated, repaired and stored exactly like a
Python task's. The subset accepted is the one OpenAI strict structured outputs accept: objects
with ``properties``, strings (``enum``, ``minLength``, ``maxLength``, ``pattern``), integers
and numbers (``minimum``, ``maximum``, exclusive bounds, ``multipleOf``), booleans, arrays
(``items``, ``minItems``, ``maxItems``), ``null`` in a type list or ``anyOf``, ``const`` and local
``$ref`` to ``$defs``. Any other keyword that would change validation is refused with its
path, never ignored.
"""

from __future__ import annotations

import copy
import importlib
import keyword
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, Field, create_model

from llm_assets.resources.errors import SchemaError

#: Keywords that only describe; they never change what is valid.
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$comment", "format"})
_NUMBER_KEYWORDS = frozenset(
    {"type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    | {"multipleOf"}
)
_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset({"type", "properties", "required", "additionalProperties", "$defs"}),
    "string": frozenset({"type", "enum", "minLength", "maxLength", "pattern", "const"}),
    "integer": _NUMBER_KEYWORDS,
    "number": _NUMBER_KEYWORDS,
    "boolean": frozenset({"type", "enum", "const"}),
    "array": frozenset({"type", "items", "minItems", "maxItems"}),
    "null": frozenset({"type"}),
}
_SCALARS: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
_CONSTRAINTS = {
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minItems": "min_length",
    "maxItems": "max_length",
}


def import_model(path: str) -> type[BaseModel]:
    """The pydantic model at a dotted path such as ``my_project.schemas.Label``.

    Args:
        path: ``package.module.ClassName``.

    Returns:
        The model class.

    Raises:
        SchemaError: The module cannot be imported, lacks the name, or it is not a model.

    Examples:
        >>> import_model("llm_assets.planner.plan.ToolCall").__name__
        'ToolCall'
    """
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise SchemaError(
            f"'{path}' is not a dotted path; write 'package.module.ClassName' or give a JSON "
            "Schema object"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchemaError(
            f"cannot import module '{module_name}' of '{path}' ({exc}); check the spelling and "
            "that the package is installed in the project's environment"
        ) from exc
    value = getattr(module, attr, None)
    if value is None:
        raise SchemaError(f"module '{module_name}' has no '{attr}' (from '{path}')")
    if not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise SchemaError(f"'{path}' is a {type(value).__name__}, not a pydantic BaseModel class")
    return value


def model_from_json_schema(schema: Mapping[str, Any], name: str = "Answer") -> type[BaseModel]:
    """A pydantic model that validates what ``schema`` describes.

    Args:
        schema: A JSON Schema whose top level is an object with ``properties``.
        name: Model name when the schema has no ``title``.

    Returns:
        The model class; its JSON schema matches ``schema`` (titles and descriptions kept).

    Raises:
        SchemaError: Naming the path of the first part that is invalid or unsupported.

    Examples:
        >>> Flag = model_from_json_schema({
        ...     "type": "object",
        ...     "properties": {"urgent": {"type": "boolean"}, "reason": {"type": "string"}},
        ...     "required": ["urgent", "reason"],
        ... }, name="Flag")
        >>> Flag(urgent=True, reason="refund").model_dump()
        {'urgent': True, 'reason': 'refund'}
    """
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a JSON Schema must be a mapping, not {type(schema).__name__}")
    builder = _Builder(schema)
    annotation = builder.annotation(schema, "output_schema", name)
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise SchemaError(
            "output_schema: the top level must be an object with 'properties' (one answer "
            "is one row; its properties become columns)"
        )
    source = copy.deepcopy(dict(schema))
    return type(annotation.__name__, (annotation, _SchemaSource), {"_source": source})


class _SchemaSource(BaseModel):
    """A model whose JSON Schema is the one it was built from, word for word.

    So a YAML task whose schema is a pydantic model's JSON Schema sends exactly what the
    Python task with that model sends, and both share one task version and the ledger.
    """

    _source: ClassVar[dict[str, Any]]

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The JSON Schema the model was built from (a copy)."""
        return copy.deepcopy(cls._source)


class _Builder:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self._defs: Mapping[str, Any] = root.get("$defs") or {}
        self._models: dict[str, type[BaseModel]] = {}
        self._building: set[str] = set()

    def annotation(self, node: Any, path: str, name: str) -> Any:
        if not isinstance(node, Mapping):
            raise SchemaError(f"{path}: expected a schema object, got {node!r}")
        if "$ref" in node:
            return self._ref(node, path)
        if "anyOf" in node:
            return self._any_of(node, path, name)
        kind = node.get("type")
        if isinstance(kind, list):
            return self._type_list(node, kind, path, name)
        if kind is None and "const" in node:
            return self._literal([node["const"]], path)
        if kind is None and "enum" in node:
            return self._literal(node["enum"], path)
        if kind not in _KEYWORDS:
            raise SchemaError(
                f"{path}: type {kind!r} is not supported; use one of {', '.join(_KEYWORDS)}"
            )
        unknown = sorted(set(node) - _KEYWORDS[kind] - _ANNOTATIONS)
        if unknown:
            raise SchemaError(
                f"{path}: keyword(s) {', '.join(unknown)} not supported for type '{kind}' "
                f"(supported: {', '.join(sorted(_KEYWORDS[kind] - {'type'}))})"
            )
        if "const" in node:
            return self._literal([node["const"]], path)
        if "enum" in node:
            return self._literal(node["enum"], path)
        if kind == "object":
            return self._object(node, path, name)
        if kind == "array":
            if "items" not in node:
                raise SchemaError(f"{path}: an array needs 'items' (the schema of one element)")
            item = self.annotation(node["items"], f"{path}.items", f"{name}Item")
            return _constrained(list[item], node)  # type: ignore[valid-type]
        if kind == "null":
            return type(None)
        return _constrained(_SCALARS[kind], node)

    def _ref(self, node: Mapping[str, Any], path: str) -> Any:
        ref = node["$ref"]
        prefix = "#/$defs/"
        if (
            not isinstance(ref, str)
            or not ref.startswith(prefix)
            or ref[len(prefix) :] not in (self._defs)
        ):
            raise SchemaError(
                f"{path}: $ref {ref!r} does not name an entry of the top-level $defs "
                f"({', '.join(self._defs) or 'none'})"
            )
        key = ref[len(prefix) :]
        if key in self._building:
            raise SchemaError(
                f"{path}: $ref {ref!r} refers back to itself; a recursive answer cannot be "
                "written as a YAML JSON Schema: give output_schema as the dotted path of a "
                "pydantic model ('my_project.schemas.Tree')"
            )
        if key not in self._models:
            self._building.add(key)
            model = self.annotation(self._defs[key], f"output_schema.$defs.{key}", key)
            self._building.discard(key)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                return model
            self._models[key] = model
        return self._models[key]

    def _any_of(self, node: Mapping[str, Any], path: str, name: str) -> Any:
        options = node["anyOf"]
        if not isinstance(options, list) or not options:
            raise SchemaError(f"{path}.anyOf: expected a non-empty list of schemas")
        members = [
            self.annotation(option, f"{path}.anyOf[{i}]", name) for i, option in enumerate(options)
        ]
        return Union[tuple(members)] if len(members) > 1 else members[0]  # noqa: UP007

    def _type_list(self, node: Mapping[str, Any], kinds: list[Any], path: str, name: str) -> Any:
        members = [
            self.annotation({**node, "type": kind}, path, name)
            for kind in kinds
            if kind != "null" or len(kinds) == 1
        ]
        if "null" in kinds and len(kinds) > 1:
            members.append(type(None))
        return Union[tuple(members)] if len(members) > 1 else members[0]  # noqa: UP007

    def _literal(self, values: Any, path: str) -> Any:
        if not isinstance(values, list) or not values:
            raise SchemaError(f"{path}.enum: expected a non-empty list of values")
        if not all(isinstance(v, str | int | float | bool) or v is None for v in values):
            raise SchemaError(f"{path}.enum: values must be strings, numbers, booleans or null")
        return Literal[tuple(values)]

    def _object(self, node: Mapping[str, Any], path: str, name: str) -> type[BaseModel]:
        properties = node.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise SchemaError(
                f"{path}: an object needs 'properties' (structured outputs cannot return a "
                "free-form mapping)"
            )
        if node.get("additionalProperties", False) not in (False,):
            raise SchemaError(f"{path}.additionalProperties: only false is supported")
        required = node.get("required", list(properties))
        if not isinstance(required, list) or not set(required) <= set(properties):
            raise SchemaError(
                f"{path}.required: must list property names ({', '.join(properties)})"
            )
        fields: dict[str, Any] = {}
        for prop, sub in properties.items():
            if not (isinstance(prop, str) and prop.isidentifier()) or keyword.iskeyword(prop):
                raise SchemaError(
                    f"{path}.properties: {prop!r} cannot be a column name; use letters, digits "
                    "and underscores, not starting with a digit"
                )
            if prop.startswith("_"):
                raise SchemaError(f"{path}.properties: {prop!r} may not start with '_'")
            sub_path = f"{path}.properties.{prop}"
            annotation = self.annotation(sub, sub_path, _pascal(prop))
            kwargs = {"description": sub["description"]} if "description" in sub else {}
            if prop in required:
                fields[prop] = (annotation, Field(**kwargs))
            elif sub.get("default") is not None:
                fields[prop] = (annotation, Field(default=sub["default"], **kwargs))
            else:
                fields[prop] = (annotation | None, Field(default=None, **kwargs))
        title = node.get("title") or name
        model = create_model(  # type: ignore[call-overload]
            str(title), __doc__=node.get("description"), **fields
        )
        return model  # type: ignore[no-any-return]


def _constrained(annotation: Any, node: Mapping[str, Any]) -> Any:
    constraints = {_CONSTRAINTS[k]: v for k, v in node.items() if k in _CONSTRAINTS}
    return Annotated[annotation, Field(**constraints)] if constraints else annotation


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Item"
