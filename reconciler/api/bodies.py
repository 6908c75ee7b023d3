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

from reconciler.api.problems import ApiError, FieldError
from reconciler.manifests import kinds as manifests

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
    max_retries: int | None = None
    slo: dict[str, Any] | None = Field(None, description="As in the manifest; judged by it.")
    rollout: dict[str, Any] | None = Field(
        None, description="Canary steps for later versions (needs slo); see docs/rollouts.md."
    )
    lifecycle: dict[str, Any] | None = None
    mock: dict[str, Any] | None = None
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
            "maxRetries": self.max_retries,
            "slo": self.slo,
            "rollout": self.rollout,
            "lifecycle": self.lifecycle,
            "mock": self.mock,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        meta: dict[str, Any] = {"id": ident, "type": manifests.KIND_MODEL, "version": self.version}
        if self.labels:
            meta["labels"] = self.labels
        return {"meta": meta, "payload": payload}


_FLAT = "A payload field, as in the brief's flat body (merge patch; not with `payload`)."


class PayloadPatch(_Body):
    """A JSON merge patch of ``payload``, given as ``{"payload": {...}}`` or flat, as the
    product brief does (``{"priority": 95}``: the payload's own fields at the top), never
    both; ``labels`` replace the labels; ``version`` only to set one explicitly. A flat
    field is checked with the whole manifest, as a ``payload`` one is. Subclasses declare
    the payload's fields, typed ``Any``: the manifest classes judge them."""

    payload: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    version: str | None = None

    def flat(self) -> dict[str, Any]:
        """The flat payload fields given (an explicit null included: it removes the field),
        by their wire names."""
        named = self.model_fields_set - {"payload", "labels", "version"}
        fields = type(self).model_fields
        return {fields[name].alias or name: getattr(self, name) for name in sorted(named)}

    def changes(self) -> dict[str, Any]:
        """The payload merge patch, whichever shape it came in."""
        return self.flat() or dict(self.payload or {})

    def update(self) -> dict[str, Any]:
        """What this PATCH asks `Authoring.update` for, for a model or a rule: the payload's
        merge patch, flat or under ``payload`` (both is a 422 naming the first flat field),
        and ``meta``'s labels and explicit version."""
        flat = self.flat()
        if flat and self.payload is not None:
            first = next(iter(flat))
            raise ApiError(
                422,
                "invalid-request",
                "Invalid request",
                f"give payload fields either flat ({first!r} at the top) or under 'payload', "
                "not both",
                errors=[FieldError(path=first, message="not beside 'payload': move it inside")],
            )
        meta: dict[str, Any] = {}
        if self.labels is not None:
            meta["labels"] = self.labels
        if self.version is not None:
            meta["version"] = self.version
        return {"payload": self.changes(), "meta": meta}


class PatchBody(PayloadPatch):
    """A change of a model: a merge patch of its payload, flat or under ``payload``."""

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
    rollout: Any = Field(None, description=_FLAT)
    lifecycle: Any = Field(None, description=_FLAT)
    mock: Any = Field(None, description=_FLAT)


class RulePatchBody(PayloadPatch):
    """A change of a routing rule: a merge patch of its payload, flat
    (``{"minScore": 0.7}``) or under ``payload``."""

    # RuleSpec's fields (tests/api/test_rules_api.py keeps the two lists equal)
    task_type: Any = Field(None, description=_FLAT)
    requires: Any = Field(None, description=_FLAT)
    min_score: Any = Field(None, description=_FLAT)
    strategy: Any = Field(None, description=_FLAT)
    weights: Any = Field(None, description=_FLAT)
    chain: Any = Field(None, description=_FLAT)
    constraints: Any = Field(None, description=_FLAT)
    failover: Any = Field(None, description=_FLAT)
    enabled: Any = Field(None, description=_FLAT)


_RULE_FLAT = "A payload field of the rule (the flat body; not with `meta` and `payload`)."


class RuleBody(_Body):
    """A new routing rule: a whole RoutingRule document (``meta`` and ``payload``), or
    the flat body, the payload's fields at the top with ``id`` (default: the
    ``taskType``), ``version`` (default ``"1"``) and ``labels``. Either shape is
    validated by the manifest class, as a file in git is."""

    meta: dict[str, Any] | None = Field(None, description="A whole document's meta.")
    payload: dict[str, Any] | None = Field(None, description="A whole document's payload.")
    id: Any = Field(None, description="Flat body: the rule's id; default: its taskType.")
    version: Any = Field(None, description='Flat body: meta.version; default "1".')
    labels: Any = Field(None, description="Flat body: meta.labels.")
    # RuleSpec's fields (tests/api/test_rules_api.py keeps the two lists equal)
    task_type: Any = Field(None, description=_RULE_FLAT)
    requires: Any = Field(None, description=_RULE_FLAT)
    min_score: Any = Field(None, description=_RULE_FLAT)
    strategy: Any = Field(None, description=_RULE_FLAT)
    weights: Any = Field(None, description=_RULE_FLAT)
    chain: Any = Field(None, description=_RULE_FLAT)
    constraints: Any = Field(None, description=_RULE_FLAT)
    failover: Any = Field(None, description=_RULE_FLAT)
    enabled: Any = Field(None, description=_RULE_FLAT)

    def flat(self) -> dict[str, Any]:
        """The flat fields given, by their wire names (``id``, ``version`` and ``labels``
        included), in the order of the manifest's fields: the file reads as one written
        by hand."""
        given = self.model_fields_set - {"meta", "payload"}
        return {
            field.alias or name: getattr(self, name)
            for name, field in type(self).model_fields.items()
            if name in given
        }

    def is_document(self) -> bool:
        return "meta" in self.model_fields_set or "payload" in self.model_fields_set

    def document(self) -> dict[str, Any]:
        """The RoutingRule document to write (not validated here). A whole document gets
        its ``meta.type`` when it has none; the flat body only the fields it gave."""
        if self.is_document():
            given = dict(self.meta or {})
            given.setdefault("type", manifests.KIND_RULE)
            return {"meta": given, "payload": dict(self.payload or {})}
        payload = {
            key: value
            for key, value in self.flat().items()
            if key not in ("id", "version", "labels")
        }
        meta: dict[str, Any] = {
            "id": self.id if self.id is not None else self.task_type,
            "type": manifests.KIND_RULE,
            "version": self.version if self.version is not None else "1",
        }
        if self.labels is not None:
            meta["labels"] = self.labels
        return {"meta": meta, "payload": payload}


class ExecuteBody(_Body):
    task_type: str | None = Field(None, max_length=63)
    capabilities: list[Capability] = Field(default_factory=list)
    prompt: str = Field(min_length=1, max_length=100_000)
    system: str | None = Field(None, max_length=100_000)
    max_tokens: int = Field(512, ge=1, le=100_000)
    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="Send the same id again on a retry: a canary split keeps it on one version.",
    )


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


class _Written(_Out):
    """What every write answers: the commit, what changed, and whether it is applied.
    ``branch`` names the branch the commit was pushed to for review (a server started
    with ``--review-branches``), null when it was committed on the fleet branch."""

    revision: str
    change: str
    applied: bool
    detail: str
    branch: str | None = None


class WriteOut(_Written):
    model: ModelDetail | None = None


class RuleSummary(_Out):
    id: str
    task_type: str
    version: str
    enabled: bool
    requires: list[str]
    min_score: float
    strategy: str
    chain: list[str]

    @classmethod
    def of(cls, rule: manifests.RoutingRule) -> RuleSummary:
        spec = rule.payload
        return cls(
            id=rule.id,
            task_type=spec.task_type,
            version=rule.meta.version,
            enabled=spec.enabled,
            requires=[c.value for c in spec.requires],
            min_score=spec.min_score,
            strategy=spec.strategy.value,
            chain=list(spec.chain),
        )


class RuleDetail(RuleSummary):
    manifest: manifests.RoutingRule


class RulePage(_Out):
    """One page of live rules, by id; ``nextCursor`` asks for the next (null: the last)."""

    items: list[RuleDetail]
    next_cursor: str | None


class RuleWriteOut(_Written):
    rule: RuleDetail | None = None


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
    version: str | None = None

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


class RollbackOut(BaseModel):
    """What the rollback did or, dry, would do (the same document as
    ``grove rollback -o json``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    kind: str
    id: str
    change: str = Field(
        description="rolled-back (committed and applied), dry-run, nothing (already live), "
        "pending (git holds it already, not applied), committed (not applied yet) or unchanged"
    )
    from_version: str
    to_version: str
    method: str | None = Field(description="revert (a git revert) or restore (a commit)")
    undoes: str | None = Field(description="The commit that introduced the version undone.")
    detail: str
    revision: str | None = Field(description="The rollback's commit, when one was made.")
    applied: bool
    quarantined: list[str]
    refused: bool = Field(description="A dry run the safety checks would refuse.")
    message: str | None = Field(description="A dry run's commit message.")
    diff: str | None = Field(description="A dry run's diff of the fleet repository.")
    plan: dict[str, Any] | None = Field(description="A dry run's plan of the apply.")
    live_since: str | None = Field(
        description="Nothing to roll back: the revision whose apply made the version live."
    )
    reverted_in: str | None = Field(
        description="Nothing to roll back: the commit that brought the version back."
    )
