"""``dg scaffold defs llm_assets.components.LLMAssetComponent <folder>``: a starting defs.yaml.

The file it writes is a complete, commented component that ``dg check defs`` accepts as soon
as its ``upstream`` names an asset of the project and the prompt's ``{fields}`` are columns of
that asset.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field

_TEMPLATE = """\
type: {type_name}
attributes:
  # Asset name, also the task name.
  name: {name}
  # The asset whose rows are prompted; the new asset takes its partitions.
  upstream: {upstream}
  system_prompt: You label customer messages.
  # {{column}} fields are filled from the upstream row.
  user_prompt: "Message: {{text}}"
  id_column: {id_column}
  # A JSON Schema (its properties become columns) or a dotted path to a pydantic model.
  output_schema:
    type: object
    properties:
      label: {{type: string, enum: [question, complaint, praise, other]}}
      summary: {{type: string, maxLength: 200}}
    required: [label, summary]
  # model: gpt-4.1-mini      # default: the llm resource's model
  max_output_tokens: 200
  max_cost_usd: 5.0          # budget of new spend per materialization
  max_failure_rate: 0.05     # the failure_rate check fails above this share of failed rows
"""


class LLMAssetScaffoldParams(BaseModel):
    """Options of ``dg scaffold defs ... --json-params '{"upstream": "tickets"}'``."""

    upstream: str = Field(default="upstream_asset", description="Key of the upstream asset.")
    id_column: str = Field(default="id", description="Upstream column identifying a row.")


class LLMAssetScaffolder(dg.Scaffolder[LLMAssetScaffoldParams]):
    """Writes a commented ``defs.yaml`` for one LLM asset named after its folder."""

    @classmethod
    def get_scaffold_params(cls) -> type[LLMAssetScaffoldParams]:
        """The options ``--json-params`` accepts."""
        return LLMAssetScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[LLMAssetScaffoldParams]) -> None:
        """Writes ``<folder>/defs.yaml`` (or, for ``--format python``, Dagster's default)."""
        params = request.params or LLMAssetScaffoldParams()
        name = request.target_path.name
        if request.scaffold_format != "yaml" or request.append:
            attributes: dict[str, Any] = {"name": name, "upstream": params.upstream}
            scaffold_component(request, attributes)
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            _TEMPLATE.format(
                type_name=request.type_name,
                name=name,
                upstream=params.upstream,
                id_column=params.id_column,
            )
        )
