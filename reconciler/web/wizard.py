"""The add-model wizard's form, as the manifest it becomes, judged by the manifests' own rules.

The wizard asks for a model in three steps; every step posts all the values
so far (the earlier steps' in hidden fields), so nothing lives on the server
between steps and every value is judged again on every step: a hidden field is
as untrusted as a visible one. A :class:`Draft` is those values as typed. Its
`document` is the manifest the API's register would commit for the same answers
(``api.bodies.RegisterBody.document``, which web cannot import: web sits below
api); `check` runs the manifest loader on the YAML text of that document, so an
error is in the validator's words with its rule code, and maps each
diagnostic's path back to the form field it came from. `routing_effect` says
which model each enabled rule picks now and with the new model, from two
routing tables built the way the router builds its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from reconciler.base.diagnostics import CATALOG, Diagnostic
from reconciler.manifests import kinds as manifests
from reconciler.manifests import loading, secretscan, yamlsafe
from reconciler.routing import ranking

CAPABILITIES = tuple(c.value for c in manifests.CapabilityType)
PROVIDERS = tuple(p.value for p in manifests.Provider)
STEP_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("name", "id", "provider", "provider_model", "endpoint", "credentials"),
    2: (
        *(f"cap_{c}" for c in CAPABILITIES),
        "context_window",
        "price_in",
        "price_out",
        "priority",
    ),
}
# error keys that name a group of inputs rather than one input, and the step it is on
GROUPS = {"capabilities": 2, "pricing": 2, "fallbacks": 2, "form": 1}
TEXT_FIELDS = STEP_FIELDS[1] + STEP_FIELDS[2]
# the order of the page, for the error summary at its top
ORDER = (
    *STEP_FIELDS[1],
    "capabilities",
    *(f"cap_{c}" for c in CAPABILITIES),
    "context_window",
    "pricing",
    "price_in",
    "price_out",
    "priority",
    "fallbacks",
    "form",
)
MAX_FALLBACKS = 16
SCHEMA_HEADER = "# yaml-language-server: $schema=../../schemas/AIModel.schema.json\n"

# a diagnostic's dotted path (or its longest known prefix) -> the form field it is about
_PATHS: dict[str, str] = {
    "meta": "id",
    "meta.id": "id",
    "payload.name": "name",
    "payload.provider": "provider",
    "payload.providerModel": "provider_model",
    "payload.endpoint": "endpoint",
    "payload.credentials": "credentials",
    "payload.capabilities": "capabilities",
    **{f"payload.capabilities.{c}": f"cap_{c}" for c in CAPABILITIES},
    "payload.contextWindow": "context_window",
    "payload.pricing": "pricing",
    "payload.pricing.inputPerMTok": "price_in",
    "payload.pricing.outputPerMTok": "price_out",
    "payload.priority": "priority",
    "payload.fallbacks": "fallbacks",
}


def step_of(field: str) -> int:
    for step, fields in STEP_FIELDS.items():
        if field in fields:
            return step
    return GROUPS.get(field, 1)


def derived_id(name: str) -> str:
    """The id the API's register derives from a name: lowercase, dashes for the rest."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]


@dataclasses.dataclass(frozen=True, slots=True)
class Draft:
    """The wizard's answers as typed (strings), and the fallbacks ticked, in order."""

    values: Mapping[str, str]
    fallbacks: tuple[str, ...] = ()

    @classmethod
    def of(cls, form: Mapping[str, str]) -> Draft:
        values = {name: form.get(name, "").strip() for name in TEXT_FIELDS}
        if not values["id"] and values["name"]:
            values["id"] = derived_id(values["name"])
        ticked = [f.strip() for f in form.get("fallbacks[]", "").split("\n") if f.strip()]
        return cls(values, tuple(dict.fromkeys(ticked)))

    def shown(self) -> dict[str, str]:
        """The values to put back in the form: any that looks like a key is left out (a
        credential value never reaches a page, even the one it was typed into)."""
        return {
            name: ""
            if secretscan.looks_secret(value, credential_field=name == "credentials")
            else value
            for name, value in self.values.items()
        }

    @property
    def ident(self) -> str:
        return self.values["id"]

    def document(self, *, placeholder: bool = False) -> dict[str, Any]:
        """The AIModel manifest of these answers, the shape the API's register writes;
        ``placeholder`` scores one capability when none is given yet, so the first
        step's cross-field rules (endpoint, credentials for the provider) are judged."""
        v = self.values
        capabilities = {
            c: _number(v[f"cap_{c}"], integer=False) for c in CAPABILITIES if v[f"cap_{c}"]
        }
        if not capabilities and placeholder:
            capabilities = {CAPABILITIES[0]: 0.5}
        payload: dict[str, Any] = {
            "name": v["name"],
            "provider": v["provider"],
            "capabilities": capabilities,
        }
        pricing = None
        if v["price_in"] or v["price_out"]:
            pricing = {
                key: _number(v[field], integer=False)
                for key, field in (("inputPerMTok", "price_in"), ("outputPerMTok", "price_out"))
                if v[field]
            }
        optional = {
            "endpoint": v["endpoint"] or None,
            "providerModel": v["provider_model"] or None,
            "credentials": {"env": v["credentials"]} if v["credentials"] else None,
            "contextWindow": _number(v["context_window"], integer=True),
            "pricing": pricing,
            "priority": _number(v["priority"], integer=True),
            "fallbacks": list(self.fallbacks) or None,
        }
        payload.update({k: value for k, value in optional.items() if value is not None})
        return {
            "meta": {"id": v["id"], "type": manifests.KIND_MODEL, "version": "1"},
            "payload": payload,
        }


def _number(text: str, *, integer: bool) -> Any:
    """A typed number as a number; text that is none stays text, for the schema to call a
    wrong type (its words, its code), instead of a message of the form's own."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)  # "nan", "inf" and 1e999 too: the schema refuses them (finite)
    except ValueError:
        return text


def yaml_text(document: dict[str, Any]) -> str:
    """The file the commit adds, as `manifests.documents.write` writes it."""
    return SCHEMA_HEADER + yamlsafe.dump([document])


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One validator diagnostic at a form field."""

    field: str
    code: str
    message: str

    @property
    def name(self) -> str:
        return CATALOG[self.code][0]

    @property
    def text(self) -> str:
        """The validator's message with its code, as the summary lists it."""
        return f"{self.message} ({self.code} {self.name})"

    @property
    def at_field(self) -> str:
        """The same without the dotted path the message starts with: the field says it."""
        path, sep, rest = self.message.partition(": ")
        message = rest if sep and "." in path and " " not in path else self.message
        return f"{message} ({self.code} {self.name})"


def in_page_order(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: ORDER.index(p.field) if p.field in ORDER else 99)


def field_of(path: str) -> str:
    parts = path.split(".") if path else []
    while parts:
        found = _PATHS.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return "form"


def problems_of(diagnostics: Sequence[Diagnostic]) -> list[Problem]:
    return [Problem(field_of(d.path), d.code, d.message) for d in diagnostics if d.is_error]


def check(
    draft: Draft,
    *,
    upto: int,
    limits: loading.Limits,
    allow_local_endpoints: bool,
    taken: Callable[[str], bool],
) -> list[Problem]:
    """The problems of the fields of steps 1..``upto``: the manifest loader's own checks
    (YAML safety, secrets, schema, cross-field rules) on the text that would be committed,
    plus an id already taken and fallbacks that name no live model."""
    document = draft.document(placeholder=upto < 2)
    name = f"models/{draft.ident or 'new'}.yaml"
    loaded = loading.load(
        [loading.SourceFile(name, yaml_text(document).encode("utf-8"))],
        limits,
        allow_local_endpoints=allow_local_endpoints,
    )
    found = [p for p in problems_of(loaded.diagnostics) if step_of(p.field) <= upto]
    if not any(p.field == "id" for p in found) and draft.ident and taken(draft.ident):
        found.append(
            Problem(
                "id",
                "R001",
                f"meta.id: AIModel {draft.ident} already exists; choose another id",
            )
        )
    return found


def errors_by_field(problems: Sequence[Problem]) -> dict[str, str]:
    """field -> its problems in one sentence each, with their codes."""
    out: dict[str, list[str]] = {}
    for p in problems:
        out.setdefault(p.field, []).append(p.at_field)
    return {field: " ".join(messages) for field, messages in out.items()}


# ---------------------------------------------------------------- the routing effect


@dataclasses.dataclass(frozen=True, slots=True)
class Effect:
    """What one enabled rule picks now and with the new model, and the new model's place."""

    rule_id: str
    task_type: str
    strategy: str
    now: str | None
    after: str | None
    place: str  # "primary", "fallback 2", "eligible", or why it is not a candidate

    @property
    def picks_new(self) -> bool:
        return self.after is not None and self.after != self.now and self.place == "primary"


def new_model(document: dict[str, Any], *, allow_local_endpoints: bool) -> manifests.AIModel | None:
    try:
        parsed = manifests.parse_document(document, allow_local_endpoints=allow_local_endpoints)
    except (ValidationError, ValueError, KeyError):
        return None
    return parsed if isinstance(parsed, manifests.AIModel) else None


def routing_effect(
    model: manifests.AIModel,
    models: Mapping[str, manifests.AIModel],
    rules: Mapping[str, manifests.RoutingRule],
    dynamic: ranking.Dynamic,
) -> list[Effect]:
    """For every enabled rule: its pick from the live models, and from the live models and
    ``model``, each decided as the router decides (the same circuits and latencies)."""
    before = ranking.RoutingTable(models, rules, revision=None, serial=-1)
    after = ranking.RoutingTable({**models, model.meta.id: model}, rules, revision=None, serial=-2)
    ident = model.meta.id
    effects = []
    for task_type, route in sorted(after.by_task.items()):
        request = ranking.TaskRequest(task_type=task_type)
        now = before.decide(request, dynamic).model_id
        decision = after.decide(request, dynamic)
        if ident in decision.chain:
            index = decision.chain.index(ident)
            place = "primary" if index == 0 else f"fallback {index}"
        elif ident in route.by_id:
            place = "eligible, beyond the failover chain"
        else:
            excluded = dict(route.excluded)
            place = excluded.get(ident, "not in the rule's explicit chain")
        effects.append(
            Effect(
                route.rule_id or task_type,
                task_type,
                route.strategy.value,
                now,
                decision.model_id,
                place,
            )
        )
    return effects


def summary(ident: str, effects: Sequence[Effect]) -> str:
    """One sentence: which rules would now pick the new model."""
    picking = [e.rule_id for e in effects if e.picks_new]
    if not effects:
        return "There is no enabled rule: requests name capabilities, and the router ranks it then."
    if not picking:
        return f"No rule would pick {ident} first; it can still serve by capability or failover."
    named = ", ".join(picking)
    rule = "rule" if len(picking) == 1 else "rules"
    return f"{rule.capitalize()} {named} would now pick {ident}."


def quiet_dynamic(today: dt.date | None = None) -> ranking.Dynamic:
    """No open circuit and no observed latency (a router with no traffic yet)."""
    return ranking.Dynamic(
        blocked=lambda key: None,
        p95_ms=lambda key: None,
        today=today or dt.datetime.now(dt.UTC).date(),
    )
