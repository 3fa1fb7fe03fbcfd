"""LLMAssetComponent: a YAML-declared LLM asset is the Python one, through the same engine."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
import pytest
from pydantic import BaseModel, Field
from reviews_example.pipeline import (
    DAILY,
    INSIGHT_TASK,
    DailyDigest,
    ReviewInsight,
    raw_reviews,
    review_insights,
)
from reviews_example.sample_reviews import generate_reviews

from llm_assets.components import (
    ComponentConfigError,
    LLMAssetComponent,
    SchemaError,
    import_model,
    model_from_json_schema,
)
from llm_assets.review.gate import policy_of
from llm_assets.simulator import SimulatorServer
from llm_assets.task import strict_json_schema
from tests.conftest import make_resources

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "yaml_component"
PARTITION = "2026-11-03"
# Differ between any two runs of the same task: who ran and paid, and how long it took.
RUN_COLUMNS = ["llm_run_id", "llm_paid_by_run_id", "llm_latency_s"]


@pytest.fixture(scope="module")
def example_defs() -> Iterator[dg.Definitions]:
    """The example dg project's definitions, loaded the way `dg` loads them."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield dg.components.load_from_defs_folder(project_root=EXAMPLE)
    finally:
        sys.path.remove(str(EXAMPLE))


def _assets_def(defs: dg.Definitions, key: str) -> dg.AssetsDefinition:
    for asset in defs.assets or []:
        if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey(key) in asset.keys:
            return asset
    raise AssertionError(f"no asset {key} in the example project")


def _table(root: Path, asset: str) -> pd.DataFrame:
    return pd.read_parquet(root / "data" / asset / f"{PARTITION}.parquet")


def test_component_asset_gives_the_python_assets_table(
    example_defs: dg.Definitions,
    simulator: SimulatorServer,
    sqlite_instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    python_dir, yaml_dir = tmp_path / "python", tmp_path / "yaml"
    reviews = generate_reviews(PARTITION)

    python_run = dg.materialize(
        [raw_reviews, review_insights],
        partition_key=PARTITION,
        resources=make_resources(simulator, python_dir),
        instance=sqlite_instance,
    )
    assert python_run.success
    assert simulator.stats()["chat_completions"] == len(reviews)
    component_insights = _assets_def(example_defs, "review_insights")
    assert component_insights is not review_insights
    yaml_run = dg.materialize(
        [
            _assets_def(example_defs, "raw_reviews"),
            component_insights,
            _assets_def(example_defs, "review_replies"),
        ],
        partition_key=PARTITION,
        resources=make_resources(simulator, yaml_dir),  # a ledger of its own: nothing shared
        instance=sqlite_instance,
    )
    assert yaml_run.success
    # The YAML asset paid for each of its rows: it did not read the Python run's answers.
    assert not _table(yaml_dir, "review_insights")["llm_cached"].any()

    expected, actual = _table(python_dir, "review_insights"), _table(yaml_dir, "review_insights")
    # The Python asset is a review gate; the YAML one has no review: block.
    expected = expected.drop(columns=["review_status", "review_reason"])
    assert len(actual) == len(reviews) and (actual["llm_status"] == "ok").all()
    assert (actual["llm_run_id"] == yaml_run.run_id).all()
    assert (actual["llm_task_version"] == INSIGHT_TASK.version_for("sim-small")).all()
    pd.testing.assert_frame_equal(
        actual.drop(columns=RUN_COLUMNS),
        expected.drop(columns=RUN_COLUMNS),
    )
    assert list(actual.columns) == list(expected.columns)

    event = sqlite_instance.get_latest_materialization_event(dg.AssetKey("review_insights"))
    assert event is not None and event.run_id == yaml_run.run_id
    assert event.asset_materialization is not None
    assert event.asset_materialization.partition == PARTITION
    meta = event.asset_materialization.metadata
    assert meta["rows"].value == len(reviews) and meta["failed"].value == 0

    # The asset over it answers in the shape of its JSON Schema.
    replies = _table(yaml_dir, "review_replies")
    assert replies["review_id"].tolist() == reviews["review_id"].tolist()
    assert (replies["llm_status"] == "ok").all()
    assert set(replies["priority"]) <= {"low", "normal", "high"}
    assert replies["needs_reply"].map(type).eq(bool).all()
    assert replies["opening"].str.len().le(300).all()
    assert (replies["llm_model"] == "sim-small").all()  # the YAML pins its model
    assert _table(yaml_dir, "review_replies_quarantine").empty
    # One request per row of each YAML asset (identical reply prompts are sent once).
    sent = len(reviews) + replies["llm_request_hash"].nunique()
    assert simulator.stats()["chat_completions"] == len(reviews) + sent


def test_component_over_a_component_inherits_partitions(example_defs: dg.Definitions) -> None:
    insights = _assets_def(example_defs, "review_insights")
    replies = _assets_def(example_defs, "review_replies")
    # raw_reviews (Python) -> review_insights (YAML) -> review_replies (YAML): daily throughout.
    assert insights.partitions_def == DAILY and replies.partitions_def == DAILY
    assert replies.asset_deps[dg.AssetKey("review_replies")] == {dg.AssetKey("review_insights")}
    assert {key.name for key in replies.check_keys} == {"failure_rate"}
    assert insights.backfill_policy == dg.BackfillPolicy.single_run()


def test_json_schema_of_a_model_gives_the_same_task_version() -> None:
    """The YAML's JSON Schema and the Python model send the same request: same version."""
    as_json = LLMAssetComponent(
        name=INSIGHT_TASK.name,
        upstream="raw_reviews",
        system_prompt=INSIGHT_TASK.system_prompt,
        user_prompt=INSIGHT_TASK.user_prompt,
        output_schema=ReviewInsight.model_json_schema(),
        id_column="review_id",
        max_output_tokens=INSIGHT_TASK.max_output_tokens,
    )
    as_path = as_json.model_copy(update={"output_schema": "reviews_example.pipeline.ReviewInsight"})
    assert as_json.build_task().version == INSIGHT_TASK.version
    assert as_path.build_task().version == INSIGHT_TASK.version
    assert as_path.build_task().output_schema is ReviewInsight


class _Address(BaseModel):
    city: str
    zip_code: str | None = Field(pattern=r"^\d{5}$")


class _Order(BaseModel):
    status: Literal["open", "shipped"]
    quantity: int = Field(ge=1, le=100)
    price: float = Field(gt=0)
    gift: bool
    notes: list[str] = Field(max_length=3)
    ship_to: _Address
    history: list[_Address]


@pytest.mark.parametrize("model", [ReviewInsight, DailyDigest, _Order])
def test_json_schema_round_trips_to_an_equivalent_model(model: type[BaseModel]) -> None:
    rebuilt = model_from_json_schema(model.model_json_schema(), name="Answer")
    assert strict_json_schema(rebuilt) == strict_json_schema(model)


def test_json_schema_model_validates_what_the_schema_says() -> None:
    order = model_from_json_schema(_Order.model_json_schema())
    good = {
        "status": "open", "quantity": 2, "price": 9.5, "gift": False, "notes": [],
        "ship_to": {"city": "Lyon", "zip_code": "69001"}, "history": [],
    }  # fmt: skip
    assert order.model_validate(good).model_dump() == good
    for bad in ({"quantity": 0}, {"status": "lost"}, {"notes": ["a"] * 4},
                {"ship_to": {"city": "Lyon", "zip_code": "x"}}):  # fmt: skip
        with pytest.raises(ValueError):
            order.model_validate({**good, **bad})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object"}, "output_schema: an object needs 'properties'"),
        ({"type": "string"}, "output_schema: the top level must be an object"),
        (
            {"type": "object", "properties": {"a": {"type": "strin"}}},
            "output_schema.properties.a: type 'strin' is not supported",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "format": "x", "oneOf": []}}},
            "output_schema.properties.a: keyword(s) oneOf not supported for type 'string'",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "array"}}},
            "output_schema.properties.a: an array needs 'items'",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}}},
            "output_schema.properties.a: $ref '#/$defs/B' does not name an entry",
        ),
        (
            {"type": "object", "properties": {"my-col": {"type": "string"}}},
            "'my-col' cannot be a column name",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
            "output_schema.required: must list property names (a)",
        ),
    ],
)
def test_bad_json_schema_is_refused_with_its_path(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as raised:
        model_from_json_schema(schema)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("ReviewInsight", "is not a dotted path"),
        ("no_such_package.Model", "cannot import module 'no_such_package'"),
        ("reviews_example.pipeline.Nope", "module 'reviews_example.pipeline' has no 'Nope'"),
        ("reviews_example.pipeline.DAILY", "not a pydantic BaseModel class"),
    ],
)
def test_bad_model_path_is_refused(path: str, message: str) -> None:
    with pytest.raises(SchemaError) as raised:
        import_model(path)
    assert message in str(raised.value)
    component = LLMAssetComponent(name="x", upstream="u", user_prompt="{a}", output_schema=path)
    with pytest.raises(ComponentConfigError) as from_component:
        component.build_task()
    assert str(from_component.value).startswith("LLMAssetComponent 'x': field `output_schema`: ")
    assert message in str(from_component.value)


def test_unknown_attribute_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="max_cost"):
        LLMAssetComponent.resolve_from_yaml(
            "name: x\nupstream: u\nuser_prompt: '{a}'\noutput_schema: a.B\nmax_cost: 2\n"
        )


def test_bad_field_value_is_refused_by_name() -> None:
    with pytest.raises(Exception, match=r"mode[\s\S]*'online' or 'batch'"):
        LLMAssetComponent.resolve_from_yaml(
            "name: x\nupstream: u\nuser_prompt: '{a}'\noutput_schema: a.B\nmode: nightly\n"
        )


def test_dg_finds_the_component_through_its_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="dagster_dg_cli.registry_modules")
    modules = {entry.value for entry in entry_points if entry.name == "llm_assets"}
    assert modules == {"llm_assets.components"}, "reinstall: pip install -e '.[dev]'"
    assert importlib.import_module("llm_assets.components").LLMAssetComponent is LLMAssetComponent


def _load_project(root: Path, module: str, files: dict[str, str]) -> dg.Definitions:
    """Loads a dg project made of ``files`` (paths under ``<module>/defs``) like `dg` does."""
    (root / "pyproject.toml").write_text(
        f'[tool.dg]\ndirectory_type = "project"\n\n[tool.dg.project]\nroot_module = "{module}"\n'
    )
    defs_dir = root / module / "defs"
    defs_dir.mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    for name, text in files.items():
        (defs_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (defs_dir / name).write_text(text)
    sys.path.insert(0, str(root))
    try:
        return dg.components.load_from_defs_folder(project_root=root)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
            del sys.modules[name]


def _component_yaml(name: str, upstream: str) -> str:
    return (
        f"type: llm_assets.components.LLMAssetComponent\nattributes:\n  name: {name}\n"
        f"  upstream: {upstream}\n  user_prompt: 'Text: {{text}}'\n"
        "  output_schema: {type: object, properties: {label: {type: string}}}\n"
    )


TICKETS_PY = """
import dagster as dg
import pandas as pd

@dg.asset(partitions_def=dg.StaticPartitionsDefinition(["eu", "us"]), key_prefix="support")
def tickets() -> pd.DataFrame:
    return pd.DataFrame({"text": ["refund please"]})
"""


def test_upstream_with_a_prefix_and_static_partitions(tmp_path: Path) -> None:
    defs = _load_project(
        tmp_path,
        "prefix_project",
        {
            "tickets.py": TICKETS_PY,
            "labels/defs.yaml": _component_yaml("labels", "support/tickets"),
        },
    )
    labels = _assets_def(defs, "labels")
    assert labels.partitions_def == dg.StaticPartitionsDefinition(["eu", "us"])
    assert labels.asset_deps[dg.AssetKey("labels")] == {dg.AssetKey(["support", "tickets"])}


def test_a_review_block_adds_the_gate_its_reviewed_asset_and_sensor(tmp_path: Path) -> None:
    review = (
        "  review:\n    below: {confidence: 0.7}\n    labels: {label: [legal]}\n"
        "    sample_rate: 0.05\n    timeout_s: 3600\n    on_timeout: reject\n"
    )
    defs = _load_project(
        tmp_path,
        "review_project",
        {
            "tickets.py": TICKETS_PY,
            "labels/defs.yaml": _component_yaml("labels", "support/tickets") + review,
        },
    )
    gate = _assets_def(defs, "labels")
    policy = policy_of(gate)
    assert policy is not None and policy.below == {"confidence": 0.7}
    assert (policy.timeout_s, policy.on_timeout) == (3600, "reject")
    reviewed = _assets_def(defs, "labels_reviewed")
    assert reviewed.asset_deps[dg.AssetKey("labels_reviewed")] == {dg.AssetKey("labels")}
    assert [s.name for s in defs.sensors or []] == ["labels_review_sensor"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"tickets.py": TICKETS_PY, "labels/defs.yaml": _component_yaml("labels", "tickets")},
            "LLMAssetComponent 'labels' (missing_project/defs/labels): field `upstream`: no "
            "asset 'tickets' is defined in this project (assets: support/tickets)",
        ),
        (
            {
                "a/defs.yaml": _component_yaml("a", "b"),
                "b/defs.yaml": _component_yaml("b", "a"),
            },
            "field `upstream`: 'a' depends, through its own upstream, on 'b'",
        ),
        (
            {"a/defs.yaml": _component_yaml("a", "a")},
            "field `upstream`: an LLM asset cannot prompt its own table",
        ),
    ],
    ids=["missing", "cycle", "itself"],
)
def test_bad_upstream_is_refused_by_name(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(Exception) as raised:
        _load_project(tmp_path, "missing_project", files)
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any(message in text for text in chain), chain


def test_json_schema_nullable_and_const_forms() -> None:
    answer = model_from_json_schema(
        {
            "type": "object",
            "properties": {
                "note": {"type": ["string", "null"], "maxLength": 3},
                "count": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "kind": {"const": "ticket"},
                "left_out": {"type": "string"},
            },
            "required": ["note", "count", "kind"],
        }
    )
    assert answer(note=None, count=None, kind="ticket").model_dump() == {
        "note": None, "count": None, "kind": "ticket", "left_out": None,
    }  # fmt: skip
    for bad in ({"note": "long"}, {"kind": "other"}, {"count": "x"}):
        with pytest.raises(ValueError):
            answer.model_validate({"note": "ok", "count": 1, "kind": "ticket", **bad})


def test_components_package_exports_exactly_its_public_names() -> None:
    package = importlib.import_module("llm_assets.components")
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, type(sys)) and name != "annotations"
    }
    assert set(package.__all__) == public
    assert list(package.__all__) == sorted(package.__all__)
