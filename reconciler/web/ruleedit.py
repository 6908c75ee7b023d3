"""The rule editor's work, apart from HTTP: a posted form read into a routing rule, checked
by the manifest model and the fleet checks, turned into a merge patch, and simulated.

A form is text. Each field is turned into the value a YAML file would hold (a number,
a list, a mapping) and the edited document is then validated exactly as a file in git
is (`manifests.loading`, then the cross-object checks of `manifests.checking` against
the live models), so an error at a field is the validator's own code and words, and the
page never judges a value the repository would judge differently.

The simulator builds a routing table of the live models with the rule as it is, and
another with the rule as edited, and asks each for a decision with the router's own
live circuits and observed latencies (`routing.ranking`): the decision now and after
the edit, side by side, with no provider called and nothing written.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests import checking, loading, yamlsafe
from reconciler.manifests import kinds as manifests
from reconciler.routing import engine as routing
from reconciler.routing import ranking

CAPABILITIES = tuple(str(c) for c in manifests.CapabilityType)
STRATEGIES = tuple(str(s) for s in manifests.Strategy)
FAILURES = tuple(str(k) for k in manifests.FailureKind)
# form field -> (payload section or None, manifest key); the field names are HTML ids too
NUMBERS: dict[str, tuple[str | None, str, type]] = {
    "minScore": (None, "minScore", float),
    "weights-capability": ("weights", "capability", float),
    "weights-latency": ("weights", "latency", float),
    "weights-cost": ("weights", "cost", float),
    "constraints-maxLatencyMs": ("constraints", "maxLatencyMs", int),
    "constraints-maxCostPerMTok": ("constraints", "maxCostPerMTok", float),
    "constraints-minContextWindow": ("constraints", "minContextWindow", int),
    "failover-maxAttempts": ("failover", "maxAttempts", int),
    "failover-cooldownS": ("failover", "cooldownS", int),
}
# the form's fields top to bottom: the order its errors are listed in
ORDER = (
    "form",
    "requires",
    "minScore",
    "strategy",
    "weights",
    *(name for name in NUMBERS if name.startswith("weights-")),
    "chain",
    "constraints",
    *(name for name in NUMBERS if name.startswith("constraints-")),
    "failover-on",
    "failover-maxAttempts",
    "failover-cooldownS",
    "enabled",
    "sim-context",
    "sim-cost",
)
MAX_CHAIN_LINES = 64  # more lines than a chain may hold (16): the rest is not even read
MAX_FIELD_CHARS = 64  # a number or a model id is shorter than this
_ID_PART = re.compile(r"\[\d+\]")


@dataclasses.dataclass(slots=True)
class Edit:
    """A posted edit: ``values`` to show the form again as it was sent, the edited
    ``payload``, and ``errors`` by form field (the validator's code and words)."""

    values: dict[str, Any]
    payload: dict[str, Any]
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    diagnostics: list[Diagnostic] = dataclasses.field(default_factory=list)
    rule: manifests.RoutingRule | None = None  # the edited rule, once it is valid

    @property
    def ok(self) -> bool:
        return self.rule is not None and not self.errors


def in_order(errors: Mapping[str, str]) -> list[tuple[str, str]]:
    """``errors`` as the form shows them, top to bottom."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(errors.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def form_values(rule: manifests.RoutingRule) -> dict[str, Any]:
    """The editor's fields for a live rule."""
    spec = rule.payload
    constraints = spec.constraints
    values: dict[str, Any] = {
        "requires": [str(c) for c in spec.requires],
        "minScore": _shown(spec.min_score),
        "strategy": str(spec.strategy),
        "chain": "\n".join(spec.chain),
        "failover-on": [str(k) for k in spec.failover.on],
        "failover-maxAttempts": str(spec.failover.max_attempts),
        "failover-cooldownS": str(spec.failover.cooldown_s),
        "enabled": spec.enabled,
    }
    weights = spec.weights
    for name in ("capability", "latency", "cost"):
        values[f"weights-{name}"] = _shown(getattr(weights, name)) if weights else ""
    values["constraints-maxLatencyMs"] = _shown(constraints.max_latency_ms if constraints else None)
    values["constraints-maxCostPerMTok"] = _shown(
        constraints.max_cost_per_m_tok if constraints else None
    )
    values["constraints-minContextWindow"] = _shown(
        constraints.min_context_window if constraints else None
    )
    return values


def _shown(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _number(text: str, kind: type) -> Any:
    """The value a YAML file would hold for ``text``: a number when it reads as one (a
    finite one), else the text itself, which the validator then names as not a number."""
    text = text.strip()
    try:
        value = int(text) if kind is int and re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    if kind is float and isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value) if "." not in text and "e" not in text.lower() else value
    return value


def read_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(values to show again, the payload fields the form sets, errors found before the
    validator: over-long fields). ``requires[]`` and ``failover-on[]`` are checkboxes."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    requires = _lines(form.get("requires[]", ""))
    values["requires"] = requires
    payload["requires"] = requires
    strategy = form.get("strategy", "").strip()[:MAX_FIELD_CHARS]
    values["strategy"] = strategy
    payload["strategy"] = strategy
    sections: dict[str, dict[str, Any]] = {"weights": {}, "constraints": {}, "failover": {}}
    for field, (section, key, kind) in NUMBERS.items():
        text = form.get(field, "")
        values[field] = text[:200]
        if len(text.strip()) > MAX_FIELD_CHARS:
            errors[field] = f"S004 longer than {MAX_FIELD_CHARS} characters: not a number"
            continue
        if not text.strip():
            continue
        value = _number(text, kind)
        if section is None:
            payload[key] = value
        else:
            sections[section][key] = value
    chain_text = form.get("chain", "")
    lines = chain_text.splitlines()
    values["chain"] = "\n".join(lines[:MAX_CHAIN_LINES])
    chain = [line.strip() for line in lines[:MAX_CHAIN_LINES] if line.strip()]
    if len(lines) > MAX_CHAIN_LINES:
        errors["chain"] = (
            f"S004 payload.chain: {len(lines)} lines; a chain holds at most 16 models "
            f"(only the first {MAX_CHAIN_LINES} lines are shown)"
        )
    payload["chain"] = chain
    on = _lines(form.get("failover-on[]", ""))
    values["failover-on"] = on
    sections["failover"]["on"] = on
    for section in ("weights", "constraints"):
        if sections[section]:
            payload[section] = sections[section]
    payload["failover"] = sections["failover"]
    enabled = form.get("enabled", "") == "true"
    values["enabled"] = enabled
    payload["enabled"] = enabled
    return values, payload, errors


def _lines(text: str) -> list[str]:
    return [line.strip()[:MAX_FIELD_CHARS] for line in text.splitlines() if line.strip()][:16]


def edit_of(
    form: Mapping[str, str],
    rule: manifests.RoutingRule,
    models: Mapping[str, manifests.AIModel],
    *,
    limits: loading.Limits,
    allow_local_endpoints: bool,
    today: dt.date,
) -> Edit:
    """The posted form as an edit of ``rule``, validated like a file in git."""
    values, fields, errors = read_form(form)
    # checkboxes come in the page's order: the same set as the rule's keeps the rule's
    # order, so an untouched field is no change (and no new version)
    spec = rule.payload
    if set(fields["requires"]) == {str(c) for c in spec.requires}:
        fields["requires"] = [str(c) for c in spec.requires]
    if set(fields["failover"]["on"]) == {str(k) for k in spec.failover.on}:
        fields["failover"]["on"] = [str(k) for k in spec.failover.on]
    document = manifests.to_document(rule)
    payload = {"taskType": rule.payload.task_type, **fields}
    edited = {"meta": document["meta"], "payload": payload}
    edit = Edit(values, payload, errors)
    if errors:
        return edit
    name = f"rules/{rule.id}.yaml"
    loaded = loading.load(
        [loading.SourceFile(name, yamlsafe.dump([edited]).encode("utf-8"))],
        limits,
        allow_local_endpoints=allow_local_endpoints,
    )
    found = [d for d in loaded.diagnostics if d.is_error]
    if not found and loaded.objects:
        item = loaded.objects[0]
        # the live models, as the fleet checks take them (only a checked item's own
        # document is read for line numbers; the models' are never asked)
        known = {i: loading.Located(model, "", item.document) for i, model in models.items()}
        found = [d for d in checking.check_some([item], known, today) if d.is_error]
        if not found:
            assert isinstance(item.obj, manifests.RoutingRule)
            edit.rule = item.obj
    edit.diagnostics = found
    for diagnostic in found:
        field = field_of(diagnostic.path)
        edit.errors.setdefault(field, f"{diagnostic.code} {diagnostic.message}")
    if not found and not loaded.objects:  # nothing loaded and nothing said: cannot happen
        edit.errors["form"] = "the edited rule could not be read"
    return edit


def field_of(path: str) -> str:
    """The form field a diagnostic's path points at (``payload.chain[3]`` -> ``chain``,
    ``payload.failover.maxAttempts`` -> ``failover-maxAttempts``); ``form`` for the rest."""
    parts = _ID_PART.sub("", path).split(".")
    if parts and parts[0] == "payload":
        parts = parts[1:]
    if not parts or not parts[0]:
        return "form"
    head = parts[0]
    if head in ("weights", "constraints", "failover") and len(parts) > 1:
        field = f"{head}-{parts[1]}"
        if field == "failover-on" or field in NUMBERS:
            return field
        return head if head != "failover" else "failover-on"
    if head in ("requires", "strategy", "chain", "enabled", "minScore", "weights", "constraints"):
        return head
    if head == "failover":
        return "failover-on"
    return "form"


def changes_of(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from ``before`` to ``after``: what `Authoring.update`
    takes, as the API's PATCH builds it. None removes a field; mappings are diffed key by
    key, so a constraint left empty is removed, not kept from the file."""
    patch: dict[str, Any] = {}
    for key in {*before, *after}:
        old, new = before.get(key), after.get(key)
        if key not in after:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(new, dict):
            inner = changes_of(old, new)
            if inner:
                patch[key] = inner
        elif old != new or key not in before:
            patch[key] = copy.deepcopy(new)
    return patch


# ---------------------------------------------------------------- the simulator


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """A request to simulate: the rule's taskType, and optionally the context it needs
    (tokens) and the most it may cost (USD per million tokens)."""

    context_tokens: int | None = None
    max_cost: float | None = None

    @property
    def given(self) -> bool:
        return self.context_tokens is not None or self.max_cost is not None


def profile_of(form: Mapping[str, str]) -> tuple[Profile, dict[str, str], dict[str, str]]:
    """(the profile, its fields as sent, errors by field)."""
    values = {
        "sim-context": form.get("sim-context", "")[:MAX_FIELD_CHARS],
        "sim-cost": form.get("sim-cost", "")[:MAX_FIELD_CHARS],
    }
    errors: dict[str, str] = {}
    context: int | None = None
    cost: float | None = None
    if values["sim-context"].strip():
        found = _number(values["sim-context"], int)
        if isinstance(found, int) and 1 <= found <= 100_000_000:
            context = found
        else:
            errors["sim-context"] = "a whole number of tokens from 1 to 100000000"
    if values["sim-cost"].strip():
        found = _number(values["sim-cost"], float)
        if isinstance(found, int | float) and 0 <= found <= 10_000:
            cost = float(found)
        else:
            errors["sim-cost"] = "a price from 0 to 10000 USD per million tokens"
    return Profile(context, cost), values, errors


@dataclasses.dataclass(frozen=True, slots=True)
class Simulation:
    """One side of the simulator: the decision, its ranked and its excluded candidates."""

    decision: ranking.RoutingDecision | None
    ranked: tuple[ranking.CandidateReport, ...]
    standby: tuple[ranking.CandidateReport, ...]  # eligible, beyond the failover chain
    excluded: tuple[ranking.CandidateReport, ...]
    note: str = ""


def dynamic_of(engine: routing.RoutingEngine) -> ranking.Dynamic:
    """What the router knows now beyond the snapshot: open circuits, observed latency."""
    return ranking.Dynamic(
        blocked=engine.breakers.blocked,
        p95_ms=engine.stats.p95,
        today=dt.datetime.now(dt.UTC).date(),
        open_circuits=engine.breakers.open_ids(),
        stats_epoch=engine.stats.epoch,
    )


def _profiled(spec: manifests.RuleSpec, profile: Profile) -> manifests.RuleSpec:
    """The rule narrowed by the request: a context at least this large, a price at most."""
    if not profile.given:
        return spec
    old = spec.constraints or manifests.Constraints()
    window = old.min_context_window
    if profile.context_tokens is not None:
        window = max(window or 0, profile.context_tokens)
    cost = old.max_cost_per_m_tok
    if profile.max_cost is not None:
        cost = profile.max_cost if cost is None else min(cost, profile.max_cost)
    constraints = old.model_copy(update={"min_context_window": window, "max_cost_per_m_tok": cost})
    return spec.model_copy(update={"constraints": constraints})


def simulate(
    table: ranking.RoutingTable,
    dynamic: ranking.Dynamic,
    rule: manifests.RoutingRule,
    profile: Profile = Profile(),
) -> Simulation:
    """The router's decision for ``rule``'s taskType over the live models of ``table``,
    as if ``rule`` were the only rule (a disabled one is simulated as enabled, and says
    so: callers of its taskType get no route while it stays disabled)."""
    spec = _profiled(rule.payload, profile).model_copy(update={"enabled": True})
    single = ranking.RoutingTable(
        table.models,
        {rule.id: rule.model_copy(update={"payload": spec})},
        revision=table.revision,
        serial=table.serial,
    )
    note = "" if rule.payload.enabled else "The rule is disabled: this is what it would pick."
    try:
        decision = single.decide(ranking.TaskRequest(task_type=spec.task_type), dynamic)
    except ranking.NoRoute as exc:
        return Simulation(None, (), (), (), str(exc))
    reports = decision.candidates
    return Simulation(
        decision,
        tuple(r for r in reports if r.rank is not None),
        tuple(r for r in reports if r.rank is None and r.eligible),
        tuple(r for r in reports if not r.eligible),
        note,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """A rule of the list, with the model the router picks for it now."""

    rule: manifests.RoutingRule
    picks: str | None
    reason: str
    pending: str | None  # the change the branch head's plan has for it


def rows(
    rules: Mapping[str, manifests.RoutingRule],
    table: ranking.RoutingTable,
    dynamic: ranking.Dynamic,
    pending: Mapping[tuple[str, str], str],
) -> list[Row]:
    found = []
    for ident in sorted(rules):
        rule = rules[ident]
        picks: str | None = None
        if not rule.payload.enabled:
            reason = "disabled: its taskType gets no route"
        else:
            try:
                decision = table.decide(
                    ranking.TaskRequest(task_type=rule.payload.task_type), dynamic
                )
            except ranking.NoRoute as exc:
                reason = str(exc)
            else:
                picks, reason = decision.model_id, decision.reason
        found.append(Row(rule, picks, reason, pending.get((manifests.KIND_RULE, ident))))
    return found
