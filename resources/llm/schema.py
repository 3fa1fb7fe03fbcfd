"""Structured-output schemas as the provider takes them: the strict form and its limits.

``to_strict_json_schema`` turns a JSON Schema into what OpenAI's strict mode takes, by the
same rules as the ``openai`` SDK's own conversion (the one ``client.chat.completions.parse``
sends); ``tests/test_schema_conformance.py`` holds the two equal over a corpus of models. It is
written here rather than imported because the result is hashed into every task version: an
SDK upgrade must not silently re-price a ledger. ``strict_schema_problems`` lists what the
provider would refuse in such a schema (unsupported keywords, a root that is not an object,
too deep, too many properties or enum values), each with the path of the field, so a task
fails where it is defined, not as a 400 for every row.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Levels of object nesting a strict schema may have (the root object is level 1).
MAX_NESTING = 10
#: Object properties in all, over the whole schema.
MAX_PROPERTIES = 5000
#: Enum values in all, over the whole schema.
MAX_ENUM_VALUES = 1000
#: Characters of property names, definition names, enum and const values, in all.
MAX_STRING_CHARS = 120_000

_COMMON = frozenset(
    {"type", "description", "title", "default", "enum", "const", "anyOf", "$ref", "$defs"}
)
_BY_TYPE: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties", "definitions"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"pattern", "format", "minLength", "maxLength"}),
    "number": frozenset(
        {"multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    ),
    "boolean": frozenset(),
    "null": frozenset(),
}
_BY_TYPE["integer"] = _BY_TYPE["number"]
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_FIXES = {
    "allOf": "use the model itself, or anyOf for alternatives",
    "oneOf": "use anyOf (a Union in pydantic)",
    "uniqueItems": "use a list and check uniqueness downstream",
    "additionalProperties": "use a model with named fields instead of a dict",
    "patternProperties": "use a model with named fields instead of a dict",
}


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One thing in a schema the provider's strict mode refuses."""

    path: str
    """Where: ``answer.items.score`` (properties by name, ``$defs.Name``, ``anyOf[1]``)."""
    message: str
    """What is wrong and how to fix it."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def to_strict_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in the form OpenAI's strict structured outputs take.

    The rules of the ``openai`` SDK: every object gets ``additionalProperties: false`` (when it
    does not say otherwise) and lists all its properties as required; ``default: null`` is
    dropped, other defaults are kept; a one-entry ``allOf`` is merged into its node; a
    ``$ref`` with other keywords beside it is replaced by the definition it names, the
    node's own keywords winning.

    Args:
        schema: A JSON Schema, e.g. ``Model.model_json_schema()``.

    Returns:
        A new schema; ``schema`` is not changed.

    Examples:
        >>> to_strict_json_schema({"type": "object", "properties": {"a": {"type": "string"}}})
        {'type': 'object', 'properties': {'a': {'type': 'string'}}, 'additionalProperties': False, 'required': ['a']}
    """  # noqa: E501
    root = copy.deepcopy(dict(schema))
    return _strict(root, root)


def _strict(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise TypeError(f"expected a schema object, got {node!r}")
    for key in ("$defs", "definitions"):
        defs = node.get(key)
        if isinstance(defs, dict):
            for sub in defs.values():
                _strict(sub, root)
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        node["properties"] = {name: _strict(sub, root) for name, sub in properties.items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root)
    if isinstance(node.get("anyOf"), list):
        node["anyOf"] = [_strict(variant, root) for variant in node["anyOf"]]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.update(_strict(all_of[0], root))
            node.pop("allOf")
        else:
            node["allOf"] = [_strict(entry, root) for entry in all_of]
    if "default" in node and node["default"] is None:
        node.pop("default")
    ref = node.get("$ref")
    if ref and len(node) > 1:
        resolved = resolve_ref(root, ref)
        node.update({**resolved, **node})
        node.pop("$ref")
        return _strict(node, root)
    return node


def resolve_ref(root: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """The schema a local ``$ref`` (``#/$defs/Name``) names in ``root``.

    Raises:
        ValueError: The reference is not local or names nothing.

    Examples:
        >>> resolve_ref({"$defs": {"A": {"type": "string"}}}, "#/$defs/A")
        {'type': 'string'}
    """
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise ValueError(f"$ref {ref!r} is not a local reference (#/$defs/Name)")
    node: Any = root
    for key in [part for part in ref[1:].split("/") if part]:
        if not isinstance(node, Mapping) or key not in node:
            raise ValueError(f"$ref {ref!r} names nothing in the schema")
        node = node[key]
    if not isinstance(node, dict):
        raise ValueError(f"$ref {ref!r} does not name a schema object")
    return node


def strict_schema_problems(
    schema: Mapping[str, Any], root_name: str = "answer"
) -> list[SchemaProblem]:
    """What OpenAI's strict mode would refuse in ``schema`` (already in strict form).

    Args:
        schema: The schema as sent, e.g. ``to_strict_json_schema(Model.model_json_schema())``.
        root_name: How paths start, e.g. the task's name.

    Returns:
        The problems, each with its path; empty when the provider takes the schema.

    Examples:
        >>> strict_schema_problems({"type": "array", "items": {"type": "string"}})[0].message
        "the top level must be an object (one answer is one row), not type 'array'"
    """
    if "anyOf" in schema or schema.get("type") != "object":
        kind = "anyOf" if "anyOf" in schema else repr(schema.get("type"))
        message = f"the top level must be an object (one answer is one row), not type {kind}"
        return [SchemaProblem(root_name, message)]
    walk = _Walk(schema)
    for def_key in ("$defs", "definitions"):
        for def_name, sub in (schema.get(def_key) or {}).items():
            walk.chars += len(def_name)
            walk.node(sub, f"{root_name}.{def_key}.{def_name}")
    walk.node(schema, root_name)
    deepest, path = _deepest(schema, schema, root_name, 1, ())
    if deepest > MAX_NESTING:
        walk.add(
            path,
            f"{deepest} levels of object nesting; at most {MAX_NESTING} are accepted: "
            "flatten the model",
        )
    for count, limit, what in (
        (walk.properties, MAX_PROPERTIES, "object properties"),
        (walk.enum_values, MAX_ENUM_VALUES, "enum values"),
        (
            walk.chars,
            MAX_STRING_CHARS,
            "characters of property names, definition names and enum values",
        ),
    ):
        if count > limit:
            walk.add(root_name, f"{count:,} {what} in all; at most {limit:,} are accepted")
    return walk.problems


class _Walk:
    """Checks every node's keywords once (definitions from the root, never through a $ref)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.problems: list[SchemaProblem] = []
        self.properties = 0
        self.enum_values = 0
        self.chars = 0

    def add(self, path: str, message: str) -> None:
        self.problems.append(SchemaProblem(path, message))

    def node(self, node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            self.add(path, f"expected a schema object, got {node!r}")
            return
        if "$ref" in node:
            self.ref(node, path)
            return
        values = [*node.get("enum", ()), *([node["const"]] if "const" in node else [])]
        self.enum_values += len(node.get("enum", ()))
        self.chars += sum(len(value) for value in values if isinstance(value, str))
        kinds = node.get("type")
        kind_list = kinds if isinstance(kinds, list) else [kinds] if kinds else []
        allowed = set(_COMMON)
        for kind in kind_list:
            if kind not in _BY_TYPE:
                self.add(path, f"type {kind!r} is not a JSON Schema type the provider takes")
                return
            allowed |= _BY_TYPE[kind]
        if not kind_list and not ({"anyOf", "enum", "const"} & node.keys()):
            self.add(
                path,
                "no 'type': a value of any type is not accepted; give the field a "
                "type (a pydantic field typed Any has none)",
            )
        for key in sorted(set(node) - allowed):
            fix = _FIXES.get(key, "remove it")
            self.add(path, f"keyword '{key}' is not supported in strict mode; {fix}")
        if node.get("format") is not None and node["format"] not in _FORMATS:
            self.add(
                path,
                f"format {node['format']!r} is not supported; use one of "
                f"{', '.join(sorted(_FORMATS))} or none",
            )
        if "object" in kind_list:
            self.object(node, path)
        if isinstance(node.get("items"), Mapping):
            self.node(node["items"], f"{path}[]")
        elif "array" in kind_list:
            self.add(path, "an array needs 'items' (the schema of one element)")
        for i, variant in enumerate(node.get("anyOf") or ()):
            self.node(variant, f"{path}.anyOf[{i}]")

    def object(self, node: Mapping[str, Any], path: str) -> None:
        if node.get("additionalProperties") is not False:
            self.add(
                path,
                "'additionalProperties' must be false: use a model with named fields "
                "instead of a free-form dict",
            )
        properties = node.get("properties") or {}
        missing = sorted(set(properties) - set(node.get("required") or ()))
        if missing:
            self.add(
                path,
                f"every property must be required; not required: {', '.join(missing)}"
                " (make the field Optional, i.e. 'X | None', instead of leaving it out)",
            )
        for name, sub in properties.items():
            self.properties += 1
            self.chars += len(name)
            self.node(sub, f"{path}.{name}")

    def ref(self, node: Mapping[str, Any], path: str) -> None:
        if len(node) > 1:
            others = ", ".join(sorted(set(node) - {"$ref"}))
            self.add(path, f"a $ref may not have other keywords beside it ({others})")
        try:
            resolve_ref(self.root, node["$ref"])
        except ValueError as exc:
            self.add(path, str(exc))


def _deepest(
    root: Mapping[str, Any], node: Any, path: str, depth: int, seen: tuple[str, ...]
) -> tuple[int, str]:
    """The deepest object nesting under ``node`` (at ``depth``), following $refs once each."""
    if not isinstance(node, Mapping):
        return 0, path
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:  # recursion is allowed; one pass through it is enough
            return 0, path
        try:
            node, seen = resolve_ref(root, ref), (*seen, ref)
        except ValueError:
            return 0, path
    kinds = node.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds)
    best = (depth, path) if is_object else (0, path)
    children: list[tuple[Any, str, int]] = [
        (sub, f"{path}.{name}", depth + 1) for name, sub in (node.get("properties") or {}).items()
    ]
    children.append((node.get("items"), f"{path}[]", depth + 1 if is_object else depth))
    children += [
        (variant, f"{path}.anyOf[{i}]", depth) for i, variant in enumerate(node.get("anyOf") or ())
    ]
    for sub, sub_path, sub_depth in children:
        if sub is not None:
            best = max(best, _deepest(root, sub, sub_path, sub_depth, seen), key=lambda b: b[0])
    return best
