"""Request and response bodies of the HTTP API: strict pydantic models, camelCase on the wire.

Requests are strict (no coercion, unknown fields refused) so a client gets a
422 naming the field instead of a guess. A register body is translated into a
manifest and validated by the manifest classes themselves, so the API and git
can never disagree on what is valid.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler import manifests

PROVIDERS = [p.value for p in manifests.Provider]
DEFAULT_LISTED_SCORE = 0.8  # a capability given as a bare name


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


class PatchBody(_Body):
    """A JSON merge patch of ``payload``; ``version`` only to set one explicitly."""

    payload: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] | None = None
    version: str | None = None


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
            score=score,
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


class HealthOut(_Out):
    status: Literal["healthy", "degraded"]
    reasons: list[str]
    serial: int
    revision: str | None
