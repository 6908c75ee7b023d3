"""The manifest types: the GroveObject envelope, ``AIModel`` and ``RoutingRule``.

These pydantic classes are the contract of DESIGN.md section 2 and the source
of ``schemas/*.schema.json``. They are used at the edges: `loading` validates
YAML into them, the API validates request bodies into them. Nothing here does
I/O. Validation is strict: no coercion (``"yes"`` is not a bool, ``1.10`` is
not a version string), unknown fields are errors, keys are camelCase.

Cross-field rules (an endpoint on a ``mock`` model, a sunset before its
deprecation, ...) are checked after the fields. When the caller passes a
``problems`` list in the validation context they are collected there with the
field they are about, so a loader can report them all with exact lines;
otherwise the first one raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from reconciler.manifests import addresses

# ---------------------------------------------------------------- enums


class CapabilityType(StrEnum):
    """The five built-in capabilities a model is scored on (0..1 each)."""

    REASONING = "reasoning"
    CREATIVITY = "creativity"
    PRECISION = "precision"
    SPEED = "speed"
    CONTEXT = "context"


class Provider(StrEnum):
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai-compatible"
    MOCK = "mock"


class ModelState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    RETIRED = "retired"


class Strategy(StrEnum):
    PRIORITY = "priority"
    LATENCY = "latency"
    COST = "cost"
    BALANCED = "balanced"


class FailureKind(StrEnum):
    """Errors that move a call to the next model of the chain."""

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"


KIND_MODEL = "AIModel"
KIND_RULE = "RoutingRule"

# Providers that need an API key named in ``credentials``.
KEYED_PROVIDERS = frozenset({Provider.ANTHROPIC, Provider.GOOGLE, Provider.OPENAI})

# ---------------------------------------------------------------- scalar types

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID = re.compile(ID_PATTERN)
# The words that follow /api/models/ and /api/rules/ in the API's paths, and /models/
# and /rules/ in the console's: an object with such an id could not be addressed
# (PATCH /api/models/health would edit a model called health). One list for both
# types; tests/loading/test_reserved_ids.py checks it against the app's routes.
RESERVED_IDS = frozenset({"discover", "health", "new", "register"})
_RESERVED_ENUM: list[JsonValue] = [*sorted(RESERVED_IDS)]  # published in the JSON Schema
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_id(value: str) -> str:
    if _ID.match(value):
        return value
    odd = next((ch for ch in value if not ch.isascii()), None)
    if odd is not None:
        why = f"contains the non-ASCII character U+{ord(odd):04X}"
    elif not value:
        why = "is empty"
    elif len(value) > 63:
        why = "is longer than 63 characters"
    elif value != value.lower():
        why = "has uppercase letters"
    else:
        why = "has characters other than a-z, 0-9 and '-' or does not start with a letter/digit"
    raise PydanticCustomError(
        "grove_S006", "id {why}; ids match ^[a-z0-9][a-z0-9-]{0,62}$", {"why": why}
    )


def _not_reserved(value: str) -> str:
    if value in RESERVED_IDS:
        raise PydanticCustomError(
            "grove_S013",
            "id '{id}' is reserved: /api/models/{id} is a path of Grove's API or console; "
            "choose another id, such as {id}-model",
            {"id": value},
        )
    return value


def _check_version(value: str) -> str:
    if not _VERSION.match(value):
        raise PydanticCustomError(
            "grove_S011",
            "version must be 1-64 characters of letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit",
        )
    return value


def _parse_date(value: Any) -> Any:
    if isinstance(value, str):
        if not _DATE.match(value):
            raise PydanticCustomError("grove_S010", "dates are written YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("grove_S010", "not a calendar date") from None
    return value


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError("grove_S012", "must be one line without control characters")
    return value


# The pattern is checked by the validators (for precise messages) and published
# in the JSON Schema so editors can check it too.
Id = Annotated[
    str,
    Strict(),
    AfterValidator(_check_id),
    Field(json_schema_extra={"pattern": ID_PATTERN}),
]
Version = Annotated[
    str,
    Strict(),
    AfterValidator(_check_version),
    Field(json_schema_extra={"pattern": _VERSION.pattern}),
]
Date = Annotated[dt.date, BeforeValidator(_parse_date)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
Text = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_single_line)]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
ProviderModel = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")]
Endpoint = Annotated[
    str, Field(max_length=2048, json_schema_extra={"format": "uri", "pattern": "^https?://"})
]
TaskType = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
LabelKey = Annotated[
    str,
    Field(pattern=r"^([a-z0-9][a-z0-9.-]{0,252}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"),
]
LabelValue = Annotated[str, Field(pattern=r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")]


# Strict mode only takes enum instances; enums are read from their string values.
Capability = Annotated[CapabilityType, Strict(False)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        allow_inf_nan=False,
        hide_input_in_errors=True,
        use_enum_values=False,
    )


# ---------------------------------------------------------------- parts


class Credentials(_Strict):
    """Where the API key lives: the name of an environment variable, never the key."""

    env: EnvName = Field(description="Environment variable that holds the API key.")


class Pricing(_Strict):
    input_per_m_tok: float = Field(ge=0, le=10_000, description="USD per million input tokens.")
    output_per_m_tok: float = Field(ge=0, le=10_000, description="USD per million output tokens.")


class Slo(_Strict):
    min_success_rate: Score = Field(0.99, description="Lowest acceptable success rate (0..1).")
    max_p95_latency_ms: int = Field(10_000, ge=1, le=3_600_000)
    min_samples: int = Field(50, ge=1, le=1_000_000, description="Calls before the SLO is judged.")
    window_s: int = Field(600, ge=1, le=30 * 86_400, description="Window the SLO is judged over.")


class RolloutStep(_Strict):
    weight: int = Field(ge=1, le=99, description="Percent of the model's calls the canary gets.")
    pause_s: int = Field(
        ge=0, le=7 * 86_400, description="Seconds at this weight before the next step."
    )


class Rollout(_Strict):
    """A canary: the new version gets each step's weight of the model's calls, judged
    against ``slo``; after the last step it takes all of them (it is promoted)."""

    steps: list[RolloutStep] = Field(min_length=1, max_length=20)
    on_inconclusive: Literal["hold", "rollback"] = Field(
        "hold", description="Too few calls by the end of a step: hold there, or roll back."
    )


class Lifecycle(_Strict):
    deprecation_date: Date | None = None
    sunset_date: Date | None = Field(None, description="After this date the model must not serve.")
    successor: Id | None = Field(None, description="Model that replaces this one.")


class MockBehaviour(_Strict):
    latency_ms: int = Field(0, ge=0, le=600_000)
    failure_rate: Score = 0.0
    reply: str = Field("ok", max_length=100_000)


class Weights(_Strict):
    capability: float = Field(0.6, ge=0, le=1)
    latency: float = Field(0.2, ge=0, le=1)
    cost: float = Field(0.2, ge=0, le=1)


class Constraints(_Strict):
    max_latency_ms: int | None = Field(None, ge=1, le=3_600_000)
    max_cost_per_m_tok: float | None = Field(None, ge=0, le=10_000)
    min_context_window: int | None = Field(None, ge=1, le=100_000_000)


def _all_failure_kinds() -> list[FailureKind]:
    return list(FailureKind)


class Failover(_Strict):
    on: list[Annotated[FailureKind, Strict(False)]] = Field(
        default_factory=_all_failure_kinds, min_length=1, max_length=4
    )
    max_attempts: int = Field(3, ge=1, le=10)
    cooldown_s: int = Field(30, ge=0, le=86_400)


# ---------------------------------------------------------------- cross-field rules

Problem = tuple[tuple[str | int, ...], str, str]  # (field path, rule code, message)


def _report(info: ValidationInfo, problems: list[Problem]) -> None:
    """Hand cross-field problems to the caller's list, or raise the first one."""
    if not problems:
        return
    sink = info.context.get("problems") if isinstance(info.context, dict) else None
    if isinstance(sink, list):
        sink.extend(problems)
        return
    path, code, message = problems[0]
    raise PydanticCustomError(
        f"grove_{code}",
        "{field}: {message}",
        {"field": ".".join(str(part) for part in path), "message": message},
    )


def _unique(values: list[str], field: str) -> list[Problem]:
    seen: set[str] = set()
    out: list[Problem] = []
    for index, value in enumerate(values):
        if value in seen:
            out.append(((*field.split("."), index), "S012", f"{field} lists {value} twice"))
        seen.add(value)
    return out


def _rollout_problems(rollout: Rollout | None, slo: Slo | None) -> list[Problem]:
    if rollout is None:
        return []
    problems: list[Problem] = []
    if slo is None:
        problems.append(
            (("rollout",), "S012", "a rollout is judged against slo: add slo (minSuccessRate, ...)")
        )
    weights = [step.weight for step in rollout.steps]
    for index in range(1, len(weights)):
        if weights[index] <= weights[index - 1]:
            problems.append(
                (
                    ("rollout", "steps", index, "weight"),
                    "S012",
                    f"step weights must grow: {weights[index]} after {weights[index - 1]}",
                )
            )
    return problems


# ---------------------------------------------------------------- payloads


class ModelSpec(_Strict):
    """``payload`` of an AIModel."""

    name: Text = Field(description="Human name shown in the console.")
    provider: Annotated[Provider, Strict(False)]
    provider_model: ProviderModel | None = Field(
        None, description="The provider's model name, e.g. claude-sonnet-4-5."
    )
    endpoint: Endpoint | None = Field(None, description="Base URL; https only. Not used by mock.")
    credentials: Credentials | None = None
    capabilities: dict[Capability, Score] = Field(min_length=1, max_length=5)
    context_window: int | None = Field(None, ge=1, le=100_000_000)
    max_output_tokens: int | None = Field(None, ge=1, le=100_000_000)
    pricing: Pricing | None = None
    priority: int = Field(100, ge=0, le=1000, description="Higher is preferred.")
    state: Annotated[ModelState, Strict(False)] = ModelState.ENABLED
    fallbacks: list[Id] = Field(default_factory=list, max_length=16)
    timeout_ms: int = Field(30_000, ge=1, le=600_000, description="Whole-call deadline.")
    max_retries: int = Field(1, ge=0, le=10)
    slo: Slo | None = None
    rollout: Rollout | None = Field(
        None, description="Canary steps for a new version; needs slo to judge them."
    )
    lifecycle: Lifecycle | None = None
    mock: MockBehaviour | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint_allowed(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        context = info.context if isinstance(info.context, dict) else {}
        try:
            return addresses.check_endpoint(
                value, allow_local=bool(context.get("allow_local_endpoints", False))
            )
        except addresses.EndpointRejected as exc:
            raise PydanticCustomError("grove_S007", "{why}", {"why": str(exc)}) from None

    @model_validator(mode="after")
    def _fits_provider(self, info: ValidationInfo) -> Self:
        problems: list[Problem] = []
        is_mock = self.provider is Provider.MOCK
        needs = f"provider {self.provider.value}"
        if is_mock:
            for field, value in (
                ("endpoint", self.endpoint),
                ("credentials", self.credentials),
            ):
                if value is not None:
                    problems.append(((field,), "S008", f"a mock model has no {field}"))
        else:
            if self.endpoint is None:
                problems.append((("endpoint",), "S008", f"{needs} needs an endpoint"))
            if self.provider_model is None:
                problems.append((("providerModel",), "S008", f"{needs} needs providerModel"))
            if self.mock is not None:
                problems.append((("mock",), "S008", "mock settings are for provider mock only"))
            if self.credentials is None and self.provider in KEYED_PROVIDERS:
                problems.append(
                    (("credentials",), "S008", f"{needs} needs credentials: {{env: VAR_NAME}}")
                )
        if (
            self.max_output_tokens is not None
            and self.context_window is not None
            and self.max_output_tokens > self.context_window
        ):
            problems.append(
                (("maxOutputTokens",), "S012", "maxOutputTokens is larger than contextWindow")
            )
        problems += _unique(list(self.fallbacks), "fallbacks")
        problems += _rollout_problems(self.rollout, self.slo)
        life = self.lifecycle
        if (
            life
            and life.deprecation_date
            and life.sunset_date
            and life.deprecation_date > life.sunset_date
        ):
            problems.append(
                (("lifecycle", "sunsetDate"), "S010", "sunsetDate is before deprecationDate")
            )
        _report(info, problems)
        return self


class RuleSpec(_Strict):
    """``payload`` of a RoutingRule."""

    task_type: TaskType = Field(description="Task name callers route by; unique across rules.")
    requires: list[Capability] = Field(min_length=1, max_length=5)
    min_score: Score = Field(0.0, description="Every required capability must reach this.")
    strategy: Annotated[Strategy, Strict(False)] = Strategy.PRIORITY
    weights: Weights | None = Field(None, description="For strategy balanced only.")
    chain: list[Id] = Field(default_factory=list, max_length=16)
    constraints: Constraints | None = None
    failover: Failover = Field(default_factory=Failover)
    enabled: bool = True

    @model_validator(mode="after")
    def _coherent(self, info: ValidationInfo) -> Self:
        problems: list[Problem] = []
        if self.weights is not None:
            if self.strategy is not Strategy.BALANCED:
                problems.append((("weights",), "S012", "weights apply to strategy balanced only"))
            elif self.weights.capability + self.weights.latency + self.weights.cost <= 0:
                problems.append((("weights",), "S012", "weights must not all be zero"))
        problems += _unique([c.value for c in self.requires], "requires")
        problems += _unique(list(self.chain), "chain")
        problems += _unique([k.value for k in self.failover.on], "failover.on")
        _report(info, problems)
        return self


# ---------------------------------------------------------------- envelopes


class _Meta(_Strict):
    id: Annotated[Id, AfterValidator(_not_reserved)] = Field(
        description="Unique per type across the repository; not a reserved word.",
        json_schema_extra={"not": {"enum": _RESERVED_ENUM}},
    )
    version: Version = Field(description="Content is immutable per version; quote it.")
    federation_id: str | None = Field(
        None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64, json_schema_extra={"additionalProperties": False}
    )


class ModelMeta(_Meta):
    type: Literal["AIModel"]


class RuleMeta(_Meta):
    type: Literal["RoutingRule"]


class AIModel(_Strict):
    """An AI model of the fleet (GroveObject of type AIModel)."""

    model_config = ConfigDict(title="AIModel")

    meta: ModelMeta
    payload: ModelSpec

    @property
    def id(self) -> str:
        return self.meta.id


class RoutingRule(_Strict):
    """A routing rule (GroveObject of type RoutingRule)."""

    model_config = ConfigDict(title="RoutingRule")

    meta: RuleMeta
    payload: RuleSpec

    @property
    def id(self) -> str:
        return self.meta.id


GroveObject = AIModel | RoutingRule

KINDS: dict[str, type[AIModel] | type[RoutingRule]] = {KIND_MODEL: AIModel, KIND_RULE: RoutingRule}


def kind_of(obj: GroveObject) -> str:
    return obj.meta.type


def to_document(obj: GroveObject) -> dict[str, Any]:
    """The manifest as plain data, camelCase keys, ``None`` fields left out."""
    return obj.model_dump(mode="json", by_alias=True, exclude_none=True)


def validator_context(*, allow_local_endpoints: bool) -> dict[str, Any]:
    return {"allow_local_endpoints": allow_local_endpoints}


# ---------------------------------------------------------------- content identity

# Fields that are operational state, not versioned content: changing them needs no bump.
STATE_FIELDS = {KIND_MODEL: "state", KIND_RULE: "enabled"}


def canonical_json(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(document: dict[str, Any]) -> str:
    """Identity of a whole manifest document (meta + payload), state included."""
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def version_hash(document: dict[str, Any]) -> str:
    """Identity of a version's content: the document without its operational state."""
    kind = document.get("meta", {}).get("type", "")
    payload = dict(document.get("payload", {}))
    payload.pop(STATE_FIELDS.get(kind, ""), None)
    return content_hash({"meta": document.get("meta", {}), "payload": payload})


def state_of(document: dict[str, Any]) -> str:
    """``enabled``/``disabled``/``retired`` for models; ``enabled``/``disabled`` for rules."""
    payload = document.get("payload", {})
    if document.get("meta", {}).get("type") == KIND_RULE:
        return "enabled" if payload.get("enabled", True) else "disabled"
    return str(payload.get("state", ModelState.ENABLED.value))


def parse_document(document: dict[str, Any], *, allow_local_endpoints: bool) -> GroveObject:
    """Validate a stored or received document (raises pydantic's ValidationError)."""
    cls = KINDS[document["meta"]["type"]]
    return cls.model_validate(
        document, context=validator_context(allow_local_endpoints=allow_local_endpoints)
    )
