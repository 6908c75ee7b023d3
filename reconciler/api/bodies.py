"""Request and response bodies of the HTTP API: strict pydantic models, camelCase on the wire.

Requests are strict (no coercion, unknown fields refused) so a client gets a
422 naming the field instead of a guess. A register body is translated into a
manifest and validated by the manifest classes themselves, so the API and git
can never disagree on what is valid.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.alias_generators import to_camel

from reconciler import manifests

PROVIDERS = [p.value for p in manifests.Provider]
DEFAULT_LISTED_SCORE = 0.8  # a capability given as a bare name
SCORE_DIGITS = 4  # decimals of a score shown by discover


class _Body(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=False,
        hide_input_in_errors=True,
    )


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


Capability = manifests.Capability  # enum values read from their strings, as in manifests


class Credentials(_Body):
    env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")


class RegisterBody(_Body):
    """The product brief's register body, plus every optional AIModel field."""

    id: str | None = Field(None, description="Default: the name, lowercased, dashes for spaces.")
    name: str = Field(min_length=1, max_length=200)
    provider: str = Field(description="One of: " + ", ".join(PROVIDERS))
    capabilities: list[Capability] | dict[Capability, float] = Field(
        description=f"Names (each scored {DEFAULT_LISTED_SCORE}) or a map of name to 0..1."
    )
    endpoint: str | None = None
    provider_model: str | None = None
    credentials: Credentials | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    pricing: dict[str, float] | None = None
    priority: int | None = None
    state: Literal["enabled", "disabled"] | None = None
    fallbacks: list[str] | None = None
    timeout_ms: int | None = None
    labels: dict[str, str] | None = None
    version: str = "1"

    def document(self) -> dict[str, Any]:
        ident = self.id or re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:63]
        capabilities = (
            {c.value: DEFAULT_LISTED_SCORE for c in self.capabilities}
            if isinstance(self.capabilities, list)
            else {c.value: v for c, v in self.capabilities.items()}
        )
        payload: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider,
            "capabilities": capabilities,
        }
        optional = {
            "endpoint": self.endpoint,
            "providerModel": self.provider_model
            or (self.id or ident if self.provider != "mock" else None),
            "credentials": self.credentials.model_dump() if self.credentials else None,
            "contextWindow": self.context_window,
            "maxOutputTokens": self.max_output_tokens,
            "pricing": self.pricing,
            "priority": self.priority,
            "state": self.state,
            "fallbacks": self.fallbacks,
            "timeoutMs": self.timeout_ms,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        meta: dict[str, Any] = {"id": ident, "type": manifests.KIND_MODEL, "version": self.version}
        if self.labels:
            meta["labels"] = self.labels
        return {"meta": meta, "payload": payload}


_FLAT = "A payload field, as in the brief's flat body (merge patch; not with `payload`)."


class PatchBody(_Body):
    """A JSON merge patch of ``payload``, given as ``{"payload": {...}}`` or flat, as the
    product brief does (``{"priority": 95}``: the payload's own fields at the top), never
    both; ``labels`` replace the labels; ``version`` only to set one explicitly. A flat
    field is checked with the whole manifest, as a ``payload`` one is."""

    payload: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    version: str | None = None
    # ModelSpec's fields (tests/api/test_day2_writes.py keeps the two lists equal)
    name: Any = Field(None, description=_FLAT)
    provider: Any = Field(None, description=_FLAT)
    provider_model: Any = Field(None, description=_FLAT)
    endpoint: Any = Field(None, description=_FLAT)
    credentials: Any = Field(None, description=_FLAT)
    capabilities: Any = Field(None, description=_FLAT)
    context_window: Any = Field(None, description=_FLAT)
    max_output_tokens: Any = Field(None, description=_FLAT)
    pricing: Any = Field(None, description=_FLAT)
    priority: Any = Field(None, description=_FLAT)
    state: Any = Field(None, description=_FLAT)
    fallbacks: Any = Field(None, description=_FLAT)
    timeout_ms: Any = Field(None, description=_FLAT)
    max_retries: Any = Field(None, description=_FLAT)
    slo: Any = Field(None, description=_FLAT)
    lifecycle: Any = Field(None, description=_FLAT)
    mock: Any = Field(None, description=_FLAT)

    def flat(self) -> dict[str, Any]:
        """The flat payload fields given (an explicit null included: it removes the field),
        by their wire names."""
        named = self.model_fields_set - {"payload", "labels", "version"}
        fields = type(self).model_fields
        return {fields[name].alias or name: getattr(self, name) for name in sorted(named)}

    def changes(self) -> dict[str, Any]:
        """The payload merge patch, whichever shape it came in."""
        return self.flat() or dict(self.payload or {})


class ExecuteBody(_Body):
    task_type: str | None = Field(None, max_length=63)
    capabilities: list[Capability] = Field(default_factory=list)
    prompt: str = Field(min_length=1, max_length=100_000)
    system: str | None = Field(None, max_length=100_000)
    max_tokens: int = Field(512, ge=1, le=100_000)


class ModelSummary(_Out):
    id: str
    name: str
    provider: str
    version: str
    state: str
    priority: int
    capabilities: dict[str, float]
    endpoint: str | None
    score: float | None = None

    @classmethod
    def of(cls, model: manifests.AIModel, score: float | None = None) -> ModelSummary:
        spec = model.payload
        return cls(
            id=model.id,
            name=spec.name,
            provider=spec.provider.value,
            version=model.meta.version,
            state=spec.state.value,
            priority=spec.priority,
            capabilities={c.value: s for c, s in spec.capabilities.items()},
            endpoint=spec.endpoint,
            # for display: 0.9, not the 0.8999999999999999 routing computed and compares
            score=None if score is None else round(score, SCORE_DIGITS),
        )


class ModelDetail(ModelSummary):
    manifest: manifests.AIModel


class WriteOut(_Out):
    revision: str
    change: str
    applied: bool
    detail: str
    model: ModelDetail | None = None


class ExecuteOut(_Out):
    model_id: str
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    request_id: str
    decision: dict[str, Any]
    attempts: list[dict[str, Any]]

    @computed_field(alias="routingDecision")  # type: ignore[prop-decorator]
    @property
    def routing_decision(self) -> dict[str, Any]:
        """The decision again, under the product brief's name."""
        return self.decision


class RecommendOut(_Out):
    """The routing decision (``modelId``, ``chain``, ``ruleId``, ``taskType``, ``strategy``,
    ``reason``, ``revision``, ``serial``, ``maxAttempts``, ``degraded``, ``candidates``)
    at the top, as ever, and again under ``routingDecision``, the product brief's name."""

    model_config = ConfigDict(extra="allow")

    routing_decision: dict[str, Any]

    @classmethod
    def of(cls, decision: dict[str, Any]) -> RecommendOut:
        return cls(**decision, routing_decision=decision)


class HealthOut(_Out):
    status: Literal["healthy", "degraded"]
    reasons: list[str]
    serial: int
    revision: str | None
