"""``LLMAssetComponent``: an ``llm_asset`` declared in a ``dg`` project's ``defs.yaml``.

The component only translates YAML into the Python API: its fields become an ``LLMTask`` and
the arguments of ``llm_asset``, so a YAML-declared asset runs the same engine, writes the same
table, quarantine and metadata, and shares the ledger with Python-declared ones. Defaults and
field descriptions of the task fields are read from ``LLMTask`` and ``llm_asset`` themselves.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from llm_assets.components.scaffold import LLMAssetScaffolder
from llm_assets.components.schema import SchemaError, import_model, model_from_json_schema
from llm_assets.components.upstream import UpstreamCycleError, find_upstream
from llm_assets.factory import llm_asset
from llm_assets.options import ResolvedOptions
from llm_assets.resources.errors import UserError
from llm_assets.review import ReviewPolicy, reviewed_asset
from llm_assets.sensors.review import review_sensor
from llm_assets.task import LLMTask


class ComponentConfigError(UserError):
    """A ``defs.yaml`` of ``LLMAssetComponent`` that cannot become an asset; names the field."""


def _task_field(name: str) -> Any:
    info = LLMTask.model_fields[name]
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=info.description)
    return Field(default=info.default, description=info.description)


def _asset_default(name: str) -> Any:
    parameter = inspect.signature(llm_asset).parameters.get(name)
    if parameter is not None:
        return parameter.default
    return next(f.default for f in dataclasses.fields(ResolvedOptions) if f.name == name)


# The YAML field is `model`, like LLMTask's; pydantic warns that it shadows the classmethod
# Resolvable.model, which stays reachable on the class (fields live on instances).
warnings.filterwarnings(
    "ignore", message='Field name "model" in "LLMAssetComponent"', category=UserWarning
)


@dg.scaffold_with(LLMAssetScaffolder)
class ReviewSettings(dg.Model, dg.Resolvable):
    """The ``review:`` block: a review gate on the asset (``llm_assets.ReviewPolicy``)."""

    below: dict[str, float] = Field(
        default_factory=dict, description="Answer field -> flag rows whose value is under it."
    )
    labels: dict[str, list[str]] = Field(
        default_factory=dict, description="Answer field -> flag rows with one of these values."
    )
    failed: bool = Field(default=False, description="Also flag failed rows.")
    sample_rate: float = Field(default=0.0, ge=0, le=1, description="Audit sample share.")
    seed: int = Field(default=0, description="Seed of the audit sample.")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds a flagged row waits before on_timeout."
    )
    on_timeout: Literal["approve", "reject", "fail"] = Field(
        default="fail", description="What happens to rows undecided at the timeout."
    )
    reviewed_name: str | None = Field(
        default=None, description="Name of the reviewed asset (default <name>_reviewed)."
    )

    def policy(self) -> ReviewPolicy:
        """The policy these settings describe."""
        return ReviewPolicy(**self.model_dump(exclude={"reviewed_name"}))


class LLMAssetComponent(dg.Component, dg.Model, dg.Resolvable):
    """An LLM asset declared in YAML: an upstream asset, prompts, an answer schema, a model.

    Each row of the upstream asset's partition is sent as one request; the answers form a
    table with the same columns, provenance, quarantine asset (``<name>_quarantine``),
    ``failure_rate`` check, budget and ledger as ``llm_asset`` in Python, because the
    component builds an ``LLMTask`` and calls ``llm_asset``. The asset takes the upstream
    asset's partitions. Resources (``llm``, ``ledger``, ``io_manager``) come from the project's
    definitions, e.g. a ``defs/resources.py``.

    Examples:
        ``src/my_project/defs/ticket_labels/defs.yaml``:

        .. code-block:: yaml

            type: llm_assets.components.LLMAssetComponent
            attributes:
              name: ticket_labels
              upstream: tickets
              system_prompt: You label customer support tickets.
              user_prompt: "Ticket: {text}"
              id_column: ticket_id
              output_schema:
                type: object
                properties:
                  label: {type: string, enum: [refund, bug, praise, other]}
                required: [label]
              max_cost_usd: 5.0

        The same in Python (what the component builds):

        >>> component = LLMAssetComponent(
        ...     name="ticket_labels", upstream="tickets", user_prompt="Ticket: {text}",
        ...     id_column="ticket_id",
        ...     output_schema={"type": "object", "properties": {"label": {"type": "string"}}},
        ... )
        >>> component.build_task().json_schema["required"]  # as sent, in strict form
        ['label']
    """

    name: str = Field(
        description="Asset name, also the task name (the structured-output schema name)."
    )
    upstream: str = Field(
        description="Key of the asset whose rows are prompted ('a/b' for a key with a "
        "prefix); it must be defined in this project. Its partitions are the asset's."
    )
    user_prompt: str = _task_field("user_prompt")
    output_schema: str | dict[str, Any] = Field(
        description="The answer: a dotted path to a pydantic model "
        "('my_project.schemas.Label') or a JSON Schema object whose properties become columns."
    )
    system_prompt: str = _task_field("system_prompt")
    model: str | None = _task_field("model")  # type: ignore[assignment]  # see the filter above
    temperature: float | None = _task_field("temperature")
    max_output_tokens: int = _task_field("max_output_tokens")
    expected_output_tokens: int | None = _task_field("expected_output_tokens")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = _task_field(
        "max_tokens_param"
    )
    params: dict[str, Any] = _task_field("params")
    columns: dict[str, str] = _task_field("columns")
    id_column: str | None = _task_field("id_column")
    strict: bool = _task_field("strict")
    repair_attempts: int = _task_field("repair_attempts")
    passthrough_columns: list[str] = Field(
        default_factory=list, description="Upstream columns copied to the output next to the id."
    )
    max_cost_usd: float | None = Field(
        default=_asset_default("max_cost_usd"),
        ge=0,
        description="Budget of new spend (US dollars) per materialization; run config "
        "`max_cost_usd` overrides it. None: no budget.",
    )
    max_failure_rate: float = Field(
        default=_asset_default("max_failure_rate"),
        ge=0,
        le=1,
        description="The failure_rate check fails for a partition above this share of failed rows.",
    )
    block_downstream_on_failures: bool = Field(
        default=_asset_default("block_downstream_on_failures"),
        description="Make the failure_rate check blocking.",
    )
    mode: Literal["online", "batch"] = Field(
        default=_asset_default("mode"),
        description="'online' sends now; 'batch' submits to the Batch API (needs a batch sensor).",
    )
    batch_max_resubmits: int = Field(
        default=_asset_default("batch_max_resubmits"),
        ge=0,
        description="Batch mode: resubmissions of a failed line before its row fails.",
    )
    review: ReviewSettings | None = Field(
        default=None,
        description="A review gate: flagged rows wait for a person; adds <name>_reviewed and "
        "a review sensor.",
    )
    group_name: str | None = Field(default=None, description="Dagster asset group.")
    description: str | None = Field(
        default=None, description="Asset description; defaults to the task's prompt."
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Asset tags.")
    llm_resource_key: str = Field(
        default=_asset_default("llm_resource_key"), description="Key of the LLMResource."
    )
    ledger_resource_key: str | None = Field(
        default=_asset_default("ledger_resource_key"),
        description="Key of the ResponseLedger; null for no ledger.",
    )
    io_manager_key: str = Field(
        default=_asset_default("io_manager_key"), description="IO manager of the output."
    )

    @property
    def asset_key(self) -> dg.AssetKey:
        """The key of the asset's table."""
        return dg.AssetKey(self.name)

    @property
    def asset_keys(self) -> tuple[dg.AssetKey, dg.AssetKey]:
        """The keys of the table and of its quarantine."""
        return self.asset_key, dg.AssetKey(f"{self.name}_quarantine")

    @property
    def upstream_key(self) -> dg.AssetKey:
        """The upstream asset's key."""
        return dg.AssetKey.from_user_string(self.upstream)

    def build_task(self, context: dg.ComponentLoadContext | None = None) -> LLMTask:
        """The ``LLMTask`` these fields describe.

        Args:
            context: The load context, to name the component's folder in errors.

        Raises:
            ComponentConfigError: The output schema cannot be loaded, or a task field is invalid.
        """
        try:
            schema = self._output_model()
        except SchemaError as exc:
            raise self._error("output_schema", str(exc), context) from exc
        names = (
            "system_prompt", "user_prompt", "model", "temperature", "max_output_tokens",
            "expected_output_tokens", "max_tokens_param", "params", "columns", "id_column",
            "strict", "repair_attempts",
        )  # fmt: skip
        try:
            return LLMTask(
                name=self.name, output_schema=schema, **{n: getattr(self, n) for n in names}
            )
        except ValueError as exc:
            raise self._error("attributes", str(exc), context) from exc

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The asset, its quarantine and its ``failure_rate`` check."""
        task = self.build_task(context)
        if self.upstream_key in self.asset_keys:
            raise self._error("upstream", "an LLM asset cannot prompt its own table", context)
        try:
            upstream, seen = find_upstream(
                context,
                self.upstream_key,
                LLMAssetComponent,
                lambda component: getattr(component, "asset_keys", ()),
            )
        except UpstreamCycleError as exc:
            raise self._error(
                "upstream",
                f"'{exc}' depends, through its own upstream, on '{self.name}': LLM assets "
                "cannot form a cycle; point one of them at another asset",
                context,
            ) from exc
        if upstream is None:
            known = ", ".join(k for k in seen if not k.endswith("_quarantine")) or "none"
            raise self._error(
                "upstream",
                f"no asset '{self.upstream}' is defined in this project (assets: {known}); "
                "name one of them, or define the upstream asset in the defs folder",
                context,
            )
        asset = llm_asset(
            task,
            upstream=self.upstream_key,
            partitions_def=upstream.partitions_def,
            passthrough_columns=self.passthrough_columns,
            max_cost_usd=self.max_cost_usd,
            group_name=self.group_name,
            description=self.description,
            llm_resource_key=self.llm_resource_key,
            ledger_resource_key=self.ledger_resource_key,
            io_manager_key=self.io_manager_key,
            tags=self.tags,
            max_failure_rate=self.max_failure_rate,
            block_downstream_on_failures=self.block_downstream_on_failures,
            mode=self.mode,
            batch_max_resubmits=self.batch_max_resubmits,
            review=self.review.policy() if self.review is not None else None,
        )
        if self.review is None:
            return dg.Definitions(assets=[asset])
        reviewed = reviewed_asset(asset, name=self.review.reviewed_name)
        sensor = review_sensor([reviewed], name=f"{self.name}_review_sensor")
        return dg.Definitions(assets=[asset, reviewed], sensors=[sensor])

    def _output_model(self) -> Any:
        if isinstance(self.output_schema, str):
            return import_model(self.output_schema)
        title = "".join(part.capitalize() for part in self.name.split("_")) or "Answer"
        return model_from_json_schema(self.output_schema, name=title)

    def _error(
        self, field: str, message: str, context: dg.ComponentLoadContext | None = None
    ) -> ComponentConfigError:
        where = ""
        if context is not None:
            path, root = context.path, context.project_root
            where = f" ({path.relative_to(root) if path.is_relative_to(root) else path})"
        if not message.startswith(field):  # JSON Schema errors start with their path
            message = f"field `{field}`: {message}"
        return ComponentConfigError(f"LLMAssetComponent '{self.name}'{where}: {message}")
