"""Structured-output schemas are what the openai SDK sends, and refused where the provider would.

The judge is the SDK's own strict conversion (``client.chat.completions.parse`` sends it): every
model of the corpus gives the same schema through ``LLMTask``, through a YAML component's JSON
Schema, and through the SDK.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema as sdk_strict_schema
from pydantic import BaseModel, Field

from llm_assets import LLMTask
from llm_assets.components import LLMAssetComponent, model_from_json_schema
from llm_assets.resources.errors import SchemaError
from llm_assets.resources.llm import strict_schema_problems, to_strict_json_schema
from llm_assets.task import strict_json_schema

pytestmark = pytest.mark.timeout(60)


class Sentiment(str, Enum):  # noqa: UP042 (the form pydantic users write)
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class Priority(int, Enum):
    LOW = 1
    HIGH = 2


class Flat(BaseModel):
    label: str
    score: float
    count: int
    urgent: bool


class Described(BaseModel):
    """An answer with a docstring and described fields."""

    label: str = Field(description="One word.")
    score: float = Field(description="0 to 1.", ge=0, le=1)


class WithEnum(BaseModel):
    sentiment: Sentiment
    priority: Priority


class WithLiteral(BaseModel):
    kind: Literal["bug", "feature", "question"]
    version: Literal[1, 2]
    fixed: Literal["yes"]


class WithOptional(BaseModel):
    note: str | None
    maybe: int | None = None


class WithDefaults(BaseModel):
    language: str = "en"
    retries: int = 3
    tags: list[str] = Field(default_factory=list)
    enabled: bool = True


class Inner(BaseModel):
    city: str
    zip_code: str = Field(pattern=r"^\d{5}$")


class Nested(BaseModel):
    home: Inner
    work: Inner | None


class DescribedRef(BaseModel):
    inner: Inner = Field(description="Where the customer lives.")


class DescribedEnumRef(BaseModel):
    sentiment: Sentiment = Field(description="Overall tone.")
    priority: Priority = Priority.LOW


class DefaultRef(BaseModel):
    inner: Inner = Inner(city="Lyon", zip_code="69001")


class Tree(BaseModel):
    name: str
    children: list[Tree]


class LinkedList(BaseModel):
    value: int
    next: LinkedList | None


class BoundedLists(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=5)
    scores: list[Annotated[int, Field(ge=0, le=10)]]
    matrix: list[list[float]]


class Cat(BaseModel):
    meow: str


class Dog(BaseModel):
    bark: str


class Unions(BaseModel):
    pet: Cat | Dog
    value: int | str
    either: Cat | Dog | None


class StringFormats(BaseModel):
    when: dt.datetime
    day: dt.date
    email_like: str = Field(pattern=r"^.+@.+$")
    short: str = Field(min_length=1, max_length=40)


class Numbers(BaseModel):
    price: float = Field(gt=0)
    percent: int = Field(ge=0, le=100, multiple_of=5)


class Deep(BaseModel):
    level: int
    nested: Nested
    trees: list[Tree]


class Titled(BaseModel):
    model_config = {"title": "A custom title"}

    a: str


class ManyFields(BaseModel):
    f01: str
    f02: int
    f03: float
    f04: bool
    f05: list[str]
    f06: Sentiment
    f07: Inner
    f08: list[Inner]
    f09: str | None
    f10: Literal["x", "y"]


class Mixed(BaseModel):
    """Everything at once, as a review-insight task might answer."""

    sentiment: Sentiment = Field(description="Tone.")
    topics: list[Literal["price", "quality", "delivery"]] = Field(max_length=3)
    address: Inner | None = Field(default=None, description="If given.")
    summary: str = Field(description="One sentence.")
    confidence: float = Field(0.5, ge=0, le=1)


CORPUS: list[type[BaseModel]] = [
    Flat, Described, WithEnum, WithLiteral, WithOptional, WithDefaults, Inner, Nested,
    DescribedRef, DescribedEnumRef, DefaultRef, Tree, LinkedList, BoundedLists, Unions,
    StringFormats, Numbers, Deep, Titled, ManyFields, Mixed,
]  # fmt: skip


@pytest.mark.parametrize("model", CORPUS, ids=lambda m: m.__name__)
def test_the_schema_sent_is_the_sdks_strict_schema(model: type[BaseModel]) -> None:
    assert len(CORPUS) >= 20
    sdk = sdk_strict_schema(model)
    assert strict_json_schema(model) == sdk
    task = LLMTask(name="t", user_prompt="{x}", output_schema=model)
    sent = task.request_body([{"role": "user", "content": "hi"}], "gpt-4o-mini")
    assert sent["response_format"]["json_schema"]["schema"] == sdk
    assert strict_schema_problems(sdk) == []


@pytest.mark.parametrize("model", CORPUS, ids=lambda m: m.__name__)
def test_a_yaml_json_schema_sends_what_the_python_model_sends(model: type[BaseModel]) -> None:
    """The JSON Schema of a model, pasted into YAML, is sent as the SDK sends the model."""
    try:
        rebuilt = model_from_json_schema(model.model_json_schema())
    except SchemaError as exc:  # the YAML subset is narrower: it must say so, never differ
        assert "refers back to itself" in str(exc), exc
        assert model in (Tree, LinkedList, Deep)
        return
    assert strict_json_schema(rebuilt) == sdk_strict_schema(model)


def test_the_conversion_does_not_change_its_input() -> None:
    schema = DescribedRef.model_json_schema()
    before = repr(schema)
    to_strict_json_schema(schema)
    assert repr(schema) == before


def test_a_described_ref_is_unravelled_and_defaults_kept() -> None:
    schema = strict_json_schema(DescribedRef)
    inner = schema["properties"]["inner"]
    assert "$ref" not in inner and inner["description"] == "Where the customer lives."
    assert inner["additionalProperties"] is False and inner["required"] == ["city", "zip_code"]
    assert strict_json_schema(WithDefaults)["properties"]["retries"]["default"] == 3
    assert "default" not in strict_json_schema(WithOptional)["properties"]["maybe"]


def test_yaml_and_python_share_one_task_version_with_an_enum_and_a_nested_model() -> None:
    python = LLMTask(
        name="insight", user_prompt="Review: {body}", output_schema=Mixed, id_column="id"
    )
    component = LLMAssetComponent(
        name="insight",
        upstream="reviews",
        user_prompt="Review: {body}",
        output_schema=Mixed.model_json_schema(),
        id_column="id",
    )
    yaml = component.build_task()
    assert "$defs" in Mixed.model_json_schema()
    assert yaml.version == python.version
    assert yaml.version_for("gpt-4o-mini") == python.version_for("gpt-4o-mini")
    messages = [{"role": "user", "content": "Review: fine"}]
    body_py = python.request_body(messages, "gpt-4o-mini")
    body_yaml = yaml.request_body(messages, "gpt-4o-mini")
    assert body_yaml == body_py
    assert python.request_key(body_py) == yaml.request_key(body_yaml)


class DictField(BaseModel):
    counts: dict[str, int]


class AnyField(BaseModel):
    payload: Any


class SetField(BaseModel):
    tags: set[str]


class DiscriminatedCat(BaseModel):
    kind: Literal["cat"]


class DiscriminatedDog(BaseModel):
    kind: Literal["dog"]


class Discriminated(BaseModel):
    pet: DiscriminatedCat | DiscriminatedDog = Field(discriminator="kind")


class TupleField(BaseModel):
    pair: tuple[int, str]


def _nest(depth: int) -> type[BaseModel]:
    model: type[BaseModel] = Flat
    for level in range(depth):
        model = type(f"Level{level}", (BaseModel,), {"__annotations__": {"child": model}})
    return model


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        (DictField, "DictField.counts", "'additionalProperties' must be false"),
        (AnyField, "AnyField.payload", "no 'type'"),
        (SetField, "SetField.tags", "keyword 'uniqueItems' is not supported"),
        (Discriminated, "Discriminated.pet", "keyword 'oneOf' is not supported"),
        (TupleField, "TupleField.pair", "keyword 'prefixItems' is not supported"),
        (_nest(10), "Level9.child.child.child.child.child.child.child.child.child.child",
         "11 levels of object nesting; at most 10"),
    ],
    ids=["dict", "any", "set", "discriminator", "tuple", "too-deep"],
)  # fmt: skip
def test_a_schema_the_provider_refuses_fails_where_the_task_is_defined(
    model: type[BaseModel], field: str, words: str
) -> None:
    with pytest.raises(SchemaError) as refused:
        LLMTask(name="t", user_prompt="{x}", output_schema=model)
    message = str(refused.value)
    assert f"{field}: {words}" in message, message
    assert "task 't'" in message and "strict=False" in message
    # Not strict: sent as the model's own schema, which a non-strict request may carry.
    LLMTask(name="t", user_prompt="{x}", output_schema=model, strict=False)


def test_limits_over_the_whole_schema_are_refused() -> None:
    many = {f"p{i}": {"type": "string"} for i in range(5001)}
    problems = strict_schema_problems(
        {
            "type": "object",
            "properties": many,
            "required": list(many),
            "additionalProperties": False,
        }
    )
    assert [p.message for p in problems] == [
        "5,001 object properties in all; at most 5,000 are accepted"
    ]
    enum = {"type": "string", "enum": [f"v{i}" for i in range(1001)]}
    problems = strict_schema_problems(
        {
            "type": "object",
            "properties": {"e": enum},
            "required": ["e"],
            "additionalProperties": False,
        }
    )
    assert [p.message for p in problems] == ["1,001 enum values in all; at most 1,000 are accepted"]
    root_union = strict_schema_problems({"anyOf": [{"type": "object"}, {"type": "string"}]})
    assert "the top level must be an object" in root_union[0].message


def test_a_recursive_model_is_not_too_deep() -> None:
    assert strict_schema_problems(strict_json_schema(Tree)) == []
    assert strict_schema_problems(strict_json_schema(LinkedList)) == []


def test_a_sibling_of_a_ref_and_a_missing_required_are_refused_in_a_raw_schema() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A", "description": "x"}, "b": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
        "$defs": {"A": {"type": "object", "properties": {"c": {"type": "string"}}}},
    }
    found = {str(problem) for problem in strict_schema_problems(schema)}
    assert "answer.a: a $ref may not have other keywords beside it (description)" in found
    assert any(
        p.startswith("answer: every property must be required; not required: b") for p in found
    )
    assert any(p.startswith("answer.$defs.A: 'additionalProperties' must be false") for p in found)


def test_a_task_pinned_to_a_reasoning_model_must_send_what_it_takes() -> None:
    with pytest.raises(ValueError, match="pass max_tokens_param='max_completion_tokens'"):
        LLMTask(name="t", user_prompt="{x}", output_schema=Flat, model="o4-mini")
    with pytest.raises(ValueError, match=r"not 0\.0; pass temperature=None"):
        LLMTask(
            name="t", user_prompt="{x}", output_schema=Flat, model="o3",
            max_tokens_param="max_completion_tokens",
        )  # fmt: skip
    fits = LLMTask(
        name="t", user_prompt="{x}", output_schema=Flat, model="o3",
        max_tokens_param="max_completion_tokens", temperature=None,
    )  # fmt: skip
    assert "max_tokens" not in fits.request_body([], "o3")
