"""The errors llm-assets raises, in one place.

Two families, so a reader knows at once who has to act::

    LLMAssetsError
    ├── UserError                  the developer must fix code or configuration
    │   ├── MissingColumnsError    upstream lacks a column the prompt needs
    │   ├── BudgetExceededError    the spend estimate or actual spend is over the budget
    │   ├── LedgerConfigError      the ledger is misconfigured (also a LedgerError)
    │   ├── ToolDefinitionError    a ``@tool`` or planner asset is defined wrong (planner)
    │   ├── PlanTooLargeError      a plan's accepted calls exceed ``max_tool_calls`` (planner)
    │   ├── ComponentConfigError   a ``defs.yaml`` of ``LLMAssetComponent`` cannot become an
    │   │                          asset (components)
    │   ├── SchemaError            an unusable ``output_schema``: not a model, or a schema the
    │   │                          provider's strict mode refuses (named field and fix)
    │   └── UpstreamCycleError     a YAML asset's upstream leads back to itself (components)
    ├── ToolFailedError            a planner tool failed after its retries (planner)
    ├── LedgerError                the response ledger failed (llm_assets.resources.ledger)
    │   └── LedgerUnavailableError its database stayed unreachable past ``outage_limit_s``
    └── ProviderError              the LLM endpoint refused the work (status, body, headers)
        ├── AuthenticationFailed   401/403: the API key is wrong or lacks access
        ├── QuotaExhausted         429 ``insufficient_quota``: billing, not rate limits
        ├── ModelNotFound          404: the model name is unknown to the endpoint
        └── EndpointUnreachable    the circuit opened: connection refused, DNS, TLS, or every
                                   request failing the same way (5xx, timeouts)

A row that fails on its own (invalid schema output, truncation, a prompt over the context
window) is not an exception: it is kept in the output table as ``failed`` with its reason.
Every class pickles, because Dagster moves errors between processes. ``CeleryWorkerLost``
(``llm_assets.celery_executor``) fails a step whose Celery worker stopped answering; it is not
an ``LLMAssetsError`` because it fails the run, not the asset, so that run retries apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class LLMAssetsError(Exception):
    """Base class of every error raised by llm-assets."""


class UserError(LLMAssetsError):
    """A usage mistake: the code or configuration must change before a retry can succeed."""


class MissingColumnsError(UserError):
    """The upstream table lacks columns that the task's prompt templates or id column need."""

    def __init__(
        self, asset: str, missing: Sequence[str], present: Sequence[str], upstream: str = "upstream"
    ) -> None:
        self.asset = asset
        self.missing = list(missing)
        self.present = list(present)
        self.upstream = upstream
        missing_txt = ", ".join(repr(c) for c in self.missing)
        present_txt = ", ".join(self.present) or "none"
        first = self.missing[0] if self.missing else "name"
        super().__init__(
            f"column(s) {missing_txt} needed by asset '{asset}' are missing from upstream "
            f"'{upstream}' (columns present: {present_txt}); add the column upstream or map "
            f"the template variable with `columns={{'{first}': '<existing column>'}}` on the task"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.asset, self.missing, self.present, self.upstream))


class BudgetExceededError(UserError):
    """Spending would pass, or has reached, the configured ``max_cost_usd``."""

    def __init__(self, message: str, *, spent_usd: float, estimated_usd: float, budget_usd: float):
        self.spent_usd = spent_usd
        self.estimated_usd = estimated_usd
        self.budget_usd = budget_usd
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_budget,
            (str(self), self.spent_usd, self.estimated_usd, self.budget_usd),
        )


def _rebuild_budget(message: str, spent: float, estimated: float, budget: float) -> Exception:
    return BudgetExceededError(message, spent_usd=spent, estimated_usd=estimated, budget_usd=budget)


class LedgerError(LLMAssetsError):
    """Base class for every error raised by the response ledger and its batch records."""


class LedgerConfigError(LedgerError, UserError):
    """The ledger is misconfigured; the message says which field to change."""


class LedgerUnavailableError(LedgerError):
    """The ledger database cannot be opened or reached."""


class SchemaError(UserError):
    """An ``output_schema`` that cannot be used: not a model, bad JSON Schema, or refused.

    Raised where a task is defined, naming the field and the fix, so a schema the provider's
    strict mode would refuse never costs a request.
    """


class ProviderError(LLMAssetsError):
    """The LLM endpoint answered with an error that stops the whole step.

    Attributes:
        status_code: HTTP status, or ``None`` for a connection-level failure.
        code: The provider's error code (``invalid_api_key``, ``insufficient_quota``...).
        body: The decoded error body.
        headers: Response headers (rate-limit headers included); never request headers.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.body = body
        self.headers = dict(headers or {})
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_provider,
            (type(self), str(self), self.status_code, self.code, self.body, self.headers),
        )


def _rebuild_provider(
    cls: type[ProviderError],
    message: str,
    status_code: int | None,
    code: str | None,
    body: Any,
    headers: dict[str, str],
) -> ProviderError:
    return cls(message, status_code=status_code, code=code, body=body, headers=headers)


class AuthenticationFailed(ProviderError):
    """The endpoint rejected the API key (401) or the key lacks access (403)."""


class QuotaExhausted(ProviderError):
    """The account is out of credit (429 ``insufficient_quota``); retrying cannot help."""


class ModelNotFound(ProviderError):
    """The endpoint does not know the requested model (404)."""


class EndpointUnreachable(ProviderError):
    """The endpoint is down or failing for every request; the step stopped early."""
