"""Deterministic, schema-valid JSON values from a JSON schema.

Covers what pydantic's ``model_json_schema()`` and OpenAI's strict schemas use: objects with
``properties``/``required``/``additionalProperties``, ``$defs`` + ``$ref``, ``anyOf``/``oneOf``/
``allOf``, ``enum``, ``const``, the scalar types, arrays with ``items``/``prefixItems``/
``minItems``/``maxItems``/``uniqueItems``, numeric bounds, string length bounds and the common
string formats. ``pattern`` and ``multipleOf`` are not honoured.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from typing import Any

from llm_assets.simulator.phrases import PhraseMaker

MAX_DEPTH = 6
"""Beyond this nesting, recursive schemas take their shortest valid form (null, empty list)."""

_NULL_BRANCH_CHANCE = 0.15
_DEFAULT_SPAN = 100
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def fill_schema(schema: dict[str, Any], rng: random.Random, phrases: PhraseMaker) -> Any:
    """Return a value valid against ``schema``, chosen by ``rng``.

    Args:
        schema: A JSON schema; ``$ref`` pointers are resolved against it.
        rng: Source of every choice, so equal seeds give equal values.
        phrases: Supplies placeholder strings made from the prompt's words.

    Returns:
        A JSON-serialisable value.

    Examples:
        >>> import random
        >>> from llm_assets.simulator.phrases import PhraseMaker
        >>> schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 3,
        ...     "minimum": 3}}, "required": ["n"]}
        >>> fill_schema(schema, random.Random(0), PhraseMaker("hello"))
        {'n': 3}
    """
    return _Filler(schema, rng, phrases).value(schema, 0)


class _Filler:
    def __init__(self, root: dict[str, Any], rng: random.Random, phrases: PhraseMaker) -> None:
        self.root = root
        self.rng = rng
        self.phrases = phrases

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            target: Any = self.root
            for part in schema["$ref"].removeprefix("#").split("/"):
                if part:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            schema = {**target, **siblings}
            seen += 1
        return schema

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return self.phrases.phrase(self.rng)
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        if "allOf" in schema:
            merged = {key: value for key, value in schema.items() if key != "allOf"}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.value(merged, depth)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(self.pick_branch(schema[key], depth), depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            branch = self.pick_branch([{"type": name} for name in kind], depth)
            kind = branch["type"]
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        filler = getattr(self, f"fill_{kind}", None)
        if filler is None:
            raise ValueError(f"unsupported JSON schema type {kind!r}")
        return filler(schema, depth)

    def pick_branch(self, branches: list[Any], depth: int) -> Any:
        branches = [self.resolve(b) if isinstance(b, dict) else b for b in branches]
        nulls = [b for b in branches if isinstance(b, dict) and b.get("type") == "null"]
        others = [b for b in branches if b not in nulls]
        if nulls and (not others or depth >= MAX_DEPTH or self.rng.random() < _NULL_BRANCH_CHANCE):
            return nulls[0]
        return self.rng.choice(others)

    def fill_null(self, schema: dict[str, Any], depth: int) -> None:
        return None

    def fill_boolean(self, schema: dict[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def fill_object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        result = {
            name: self.value(sub, depth + 1)
            for name, sub in properties.items()
            if depth < MAX_DEPTH or name in required
        }
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict) and depth < MAX_DEPTH:
            for _ in range(self.rng.randint(1, 2)):
                key = self.rng.choice(self.phrases.words)
                result[key] = self.value(extra, depth + 1)
        return result

    def fill_array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        min_items = int(schema.get("minItems", len(prefix)))
        max_items = int(schema.get("maxItems", max(min_items, 3)))
        if depth >= MAX_DEPTH:
            count = min_items
        else:
            upper = min(max_items, max(min_items, 3))
            count = self.rng.randint(min(upper, max(min_items, 1)), upper)
        items: list[Any] = [self.value(sub, depth + 1) for sub in prefix[:count]]
        item_schema = schema.get("items", {})
        while len(items) < count:
            item = self.value(item_schema, depth + 1)
            for _ in range(5):
                if not schema.get("uniqueItems") or item not in items:
                    break
                item = self.value(item_schema, depth + 1)
            items.append(item)
        return items

    def fill_string(self, schema: dict[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            return self.moment().date().isoformat()
        if fmt == "date-time":
            return self.moment().isoformat().replace("+00:00", "Z")
        if fmt == "time":
            return self.moment().time().isoformat()
        if fmt == "duration":
            return f"PT{self.rng.randint(1, 59)}M"
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if fmt == "email":
            return f"{self.rng.choice(self.phrases.words)}@example.com"
        if fmt in ("uri", "url"):
            return f"https://example.com/sim/{self.rng.choice(self.phrases.words)}"
        min_length = int(schema.get("minLength", 0))
        max_length = schema.get("maxLength")
        return self.phrases.phrase(
            self.rng, min_length, None if max_length is None else int(max_length)
        )

    def moment(self) -> dt.datetime:
        return _EPOCH + dt.timedelta(seconds=self.rng.randrange(366 * 24 * 3600))

    def fill_integer(self, schema: dict[str, Any], depth: int) -> int:
        low, high, low_open, high_open = _bounds(schema)
        low_int = math.ceil(low) + (1 if low_open and low.is_integer() else 0)
        high_int = math.floor(high) - (1 if high_open and high.is_integer() else 0)
        if low_int > high_int:
            return low_int
        return self.rng.randint(low_int, high_int)

    def fill_number(self, schema: dict[str, Any], depth: int) -> float:
        low, high, low_open, high_open = _bounds(schema)
        # Work in hundredths so the value prints short and still respects the bounds.
        low_c = math.ceil(low * 100) + (1 if low_open else 0)
        high_c = math.floor(high * 100) - (1 if high_open else 0)
        if low_c > high_c:
            return (low + high) / 2
        return self.rng.randint(low_c, high_c) / 100


def _bounds(schema: dict[str, Any]) -> tuple[float, float, bool, bool]:
    """Return (low, high, low is exclusive, high is exclusive), inventing a span if unbounded."""
    low = schema.get("minimum")
    low_open = low is None and "exclusiveMinimum" in schema
    if low_open:
        low = schema["exclusiveMinimum"]
    high = schema.get("maximum")
    high_open = high is None and "exclusiveMaximum" in schema
    if high_open:
        high = schema["exclusiveMaximum"]
    if low is None:
        if high is None:
            return 0.0, float(_DEFAULT_SPAN), False, False
        return float(high) - _DEFAULT_SPAN, float(high), False, high_open
    if high is None:
        return float(low), float(low) + _DEFAULT_SPAN, low_open, False
    return float(low), float(high), low_open, high_open
