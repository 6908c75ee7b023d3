"""Routing decisions: which model answers a task, in which order the others stand by, and why.

Pure and precomputed. :class:`RoutingTable` is built once per snapshot of
reconciled state: for every rule it keeps the statically eligible candidates
(enabled, every required capability at ``minScore``, static constraints) with
the reasons the others were excluded, already ordered for the static
strategies (priority, cost). A decision then only applies what changes
between snapshots (open circuits, sunset dates, observed latency) to that
short list: no I/O and no scan of the fleet. Capability-only requests get
the same treatment, cached per capability set.

Ordering (DESIGN section 7): ``priority`` by priority, then capability score,
then id; ``latency`` by observed p95 (declared timeout when unobserved);
``cost`` by blended price; ``balanced`` by the rule's weights over normalized
capability, latency and cost. An explicit ``chain`` is honoured as written.
The primary's own ``fallbacks`` follow it in the failover chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler import manifests, scoring

Strategy = manifests.Strategy
MAX_CAPABILITY_ROUTES = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRequest:
    """A task to route: a ``task_type`` (matched to a rule) and/or capabilities directly."""

    task_type: str | None = None
    required_capability: manifests.CapabilityType | None = None
    capabilities: tuple[manifests.CapabilityType, ...] = ()
    min_score: float = 0.0
    prompt: str = ""
    max_tokens: int = 512
    request_id: str | None = None

    def wanted(self) -> tuple[manifests.CapabilityType, ...]:
        caps = list(self.capabilities)
        if self.required_capability is not None:
            caps.insert(0, self.required_capability)
        return tuple(dict.fromkeys(manifests.CapabilityType(c) for c in caps))


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    model_id: str
    priority: int
    score: float  # mean of the required capabilities
    price: float | None  # blended USD per million tokens
    timeout_ms: int
    sunset: dt.date | None
    fallbacks: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CandidateReport:
    """One model as the decision saw it: its place, score, or why it was left out."""

    model_id: str
    eligible: bool
    rank: int | None
    score: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "modelId": self.model_id,
            "eligible": self.eligible,
            "rank": self.rank,
            "score": None if self.score is None else round(self.score, 6),
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingDecision:
    model_id: str | None
    chain: tuple[str, ...]
    rule_id: str | None
    task_type: str | None
    strategy: str
    candidates: tuple[CandidateReport, ...]
    reason: str
    revision: str | None
    serial: int
    max_attempts: int
    degraded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "modelId": self.model_id,
            "chain": list(self.chain),
            "ruleId": self.rule_id,
            "taskType": self.task_type,
            "strategy": self.strategy,
            "reason": self.reason,
            "revision": self.revision,
            "serial": self.serial,
            "maxAttempts": self.max_attempts,
            "degraded": self.degraded,
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A rule (or a capability set) with its statically eligible candidates, precomputed."""

    rule_id: str | None
    task_type: str | None
    strategy: Strategy
    weights: manifests.Weights
    requires: tuple[manifests.CapabilityType, ...]
    max_latency_ms: int | None
    failover: manifests.Failover
    eligible: tuple[Candidate, ...]  # in static order (chain, priority or cost)
    excluded: tuple[tuple[str, str], ...]  # (model id, reason), static
    explicit_chain: bool
    rule: manifests.RuleSpec | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Dynamic:
    """What changes between snapshots, supplied by the router at decision time."""

    blocked: Callable[[str], str | None]  # circuit state: why a model is skipped now
    p95_ms: Callable[[str], float | None]  # observed latency
    today: dt.date


class NoRoute(LookupError):
    """The request names no rule and no capability, or an unknown task type."""


class RoutingTable:
    def __init__(
        self,
        models: Mapping[str, manifests.AIModel],
        rules: Mapping[str, manifests.RoutingRule],
        *,
        revision: str | None,
        serial: int,
    ) -> None:
        self.models = models
        self.revision = revision
        self.serial = serial
        self.enabled = tuple(
            sorted(i for i, m in models.items() if m.payload.state is manifests.ModelState.ENABLED)
        )
        self.by_task: dict[str, Route] = {}
        for ident, rule in sorted(rules.items()):
            if rule.payload.enabled:
                self.by_task[rule.payload.task_type] = self._route(ident, rule.payload)
        self._by_capabilities: dict[tuple[tuple[str, ...], float], Route] = {}
        self._narrow_cache: dict[tuple[str | None, tuple[str, ...], float], Route] = {}

    # ---------------------------------------------------------------- building

    def _route(self, ident: str | None, rule: manifests.RuleSpec) -> Route:
        pool = list(rule.chain) if rule.chain else sorted(self.models)
        eligible: list[Candidate] = []
        excluded: list[tuple[str, str]] = []
        for model_id in pool:
            model = self.models.get(model_id)
            if model is None:
                excluded.append((model_id, "not in the registry"))
                continue
            why = _static_exclusion(model.payload, rule)
            if why is not None:
                excluded.append((model_id, why))
                continue
            spec = model.payload
            match = scoring.match_capabilities(rule.requires, spec.capabilities)
            eligible.append(
                Candidate(
                    model_id=model_id,
                    priority=spec.priority,
                    score=match.score,
                    price=scoring.blended_price(spec.pricing),
                    timeout_ms=spec.timeout_ms,
                    sunset=spec.lifecycle.sunset_date if spec.lifecycle else None,
                    fallbacks=tuple(spec.fallbacks),
                )
            )
        if not rule.chain:
            eligible.sort(key=_static_key(rule.strategy))
        constraints = rule.constraints
        return Route(
            rule_id=ident,
            task_type=rule.task_type,
            strategy=rule.strategy,
            weights=rule.weights or manifests.Weights.model_validate({}),
            requires=tuple(rule.requires),
            max_latency_ms=constraints.max_latency_ms if constraints else None,
            failover=rule.failover,
            eligible=tuple(eligible),
            excluded=tuple(excluded),
            explicit_chain=bool(rule.chain),
            rule=rule,
        )

    def route_for(self, request: TaskRequest) -> Route:
        if request.task_type:
            route = self.by_task.get(request.task_type)
            if route is None:
                raise NoRoute(f"no enabled routing rule has taskType {request.task_type!r}")
            extra = [c for c in request.wanted() if c not in route.requires]
            if not extra and request.min_score <= (route.rule.min_score if route.rule else 0):
                return route
            return self._narrowed(route, extra, request.min_score)
        wanted = request.wanted()
        if not wanted:
            raise NoRoute("name a taskType or at least one capability")
        return self._capability_route(wanted, request.min_score)

    def _narrowed(
        self, route: Route, extra: Sequence[manifests.CapabilityType], min_score: float
    ) -> Route:
        """The rule with more required capabilities (or a higher minScore): never looser."""
        assert route.rule is not None
        key = (route.rule_id, tuple(sorted(c.value for c in extra)), min_score)
        cached = self._narrow_cache.get(key)
        if cached is None:
            rule = route.rule.model_copy(
                update={
                    "requires": [*route.rule.requires, *extra],
                    "min_score": max(route.rule.min_score, min_score),
                }
            )
            cached = self._route(route.rule_id, rule)
            if len(self._narrow_cache) >= MAX_CAPABILITY_ROUTES:
                self._narrow_cache.clear()
            self._narrow_cache[key] = cached
        return cached

    def _capability_route(
        self, wanted: Sequence[manifests.CapabilityType], min_score: float
    ) -> Route:
        """Capabilities without a rule: priority order, cached per capability set."""
        key = (tuple(sorted(c.value for c in wanted)), min_score)
        cached = self._by_capabilities.get(key)
        if cached is None:
            rule = manifests.RuleSpec.model_validate(
                {
                    "taskType": "adhoc",
                    "requires": [c.value for c in dict.fromkeys(wanted)],
                    "minScore": min_score,
                }
            )
            cached = dataclasses.replace(self._route(None, rule), task_type=None)
            if len(self._by_capabilities) >= MAX_CAPABILITY_ROUTES:
                self._by_capabilities.clear()
            self._by_capabilities[key] = cached
        return cached

    # ---------------------------------------------------------------- deciding

    def decide(self, request: TaskRequest, dynamic: Dynamic) -> RoutingDecision:
        route = self.route_for(request)
        live: list[Candidate] = []
        reports: dict[str, CandidateReport] = {}
        for candidate in route.eligible:
            why = self._dynamic_exclusion(candidate, route, dynamic)
            if why is not None:
                reports[candidate.model_id] = CandidateReport(
                    candidate.model_id, False, None, candidate.score, why
                )
            else:
                live.append(candidate)
        ordered = self._order(route, live, dynamic)
        chain = _with_fallbacks(ordered, {c.model_id for c in route.eligible}, reports)
        for rank, model_id in enumerate(chain, start=1):
            found = next((c for c in live if c.model_id == model_id), None)
            score = found.score if found else None
            role = "primary" if rank == 1 else f"fallback {rank - 1}"
            reports[model_id] = CandidateReport(model_id, True, rank, score, role)
        for model_id, why in route.excluded:
            reports.setdefault(model_id, CandidateReport(model_id, False, None, None, why))
        return RoutingDecision(
            model_id=chain[0] if chain else None,
            chain=tuple(chain),
            rule_id=route.rule_id,
            task_type=route.task_type,
            strategy=route.strategy.value,
            candidates=tuple(
                sorted(reports.values(), key=lambda r: (r.rank is None, r.rank or 0, r.model_id))
            ),
            reason=_reason(route, ordered, dynamic, reports),
            revision=self.revision,
            serial=self.serial,
            max_attempts=route.failover.max_attempts,
        )

    def _dynamic_exclusion(
        self, candidate: Candidate, route: Route, dynamic: Dynamic
    ) -> str | None:
        if candidate.sunset is not None and candidate.sunset < dynamic.today:
            return f"past its sunset date {candidate.sunset}"
        blocked = dynamic.blocked(candidate.model_id)
        if blocked is not None:
            return blocked
        if route.max_latency_ms is not None:
            p95 = dynamic.p95_ms(candidate.model_id)
            if p95 is not None and p95 > route.max_latency_ms:
                return f"observed p95 {p95:.0f} ms > maxLatencyMs {route.max_latency_ms}"
        return None

    def _order(self, route: Route, live: list[Candidate], dynamic: Dynamic) -> list[Candidate]:
        if route.explicit_chain or route.strategy in (Strategy.PRIORITY, Strategy.COST):
            return live  # already in static order
        if route.strategy is Strategy.LATENCY:
            return sorted(live, key=lambda c: (_latency(c, dynamic), -c.score, c.model_id))
        return sorted(live, key=lambda c: (-_balanced(c, live, route, dynamic), c.model_id))

    def round_robin(self, counter: int, reason: str) -> RoutingDecision:
        """Degraded mode: every enabled model in turn, when the router itself failed."""
        ids = self.enabled
        start = counter % len(ids) if ids else 0
        chain = tuple(ids[start:] + ids[:start])
        return RoutingDecision(
            model_id=chain[0] if chain else None,
            chain=chain,
            rule_id=None,
            task_type=None,
            strategy="round-robin",
            candidates=tuple(
                CandidateReport(m, True, i + 1, None, "round-robin") for i, m in enumerate(chain)
            ),
            reason=f"round-robin fallback: {reason}",
            revision=self.revision,
            serial=self.serial,
            max_attempts=min(3, len(chain)) or 1,
            degraded=True,
        )


def _static_exclusion(spec: manifests.ModelSpec, rule: manifests.RuleSpec) -> str | None:
    if spec.state is not manifests.ModelState.ENABLED:
        return f"state {spec.state.value}"
    match = scoring.match_capabilities(rule.requires, spec.capabilities)
    if match.missing:
        return "lacks " + ", ".join(c.value for c in match.missing)
    if match.weakest < rule.min_score:
        weak = ", ".join(f"{c.value} {s:g}" for c, s in match.scores.items() if s < rule.min_score)
        return f"{weak} below minScore {rule.min_score:g}"
    if rule.constraints is not None:
        return scoring.static_exclusion(
            spec,
            min_context_window=rule.constraints.min_context_window,
            max_cost_per_m_tok=rule.constraints.max_cost_per_m_tok,
        )
    return None


def _static_key(strategy: Strategy) -> Callable[[Candidate], tuple[Any, ...]]:
    if strategy is Strategy.COST:
        return lambda c: (math.inf if c.price is None else c.price, -c.score, c.model_id)
    return lambda c: (-c.priority, -c.score, c.model_id)


def _latency(candidate: Candidate, dynamic: Dynamic) -> float:
    observed = dynamic.p95_ms(candidate.model_id)
    return observed if observed is not None else float(candidate.timeout_ms)


def _balanced(candidate: Candidate, live: list[Candidate], route: Route, dynamic: Dynamic) -> float:
    slowest = max((_latency(c, dynamic) for c in live), default=1.0) or 1.0
    priciest = max((c.price or 0.0 for c in live), default=0.0)
    latency_part = 1.0 - _latency(candidate, dynamic) / slowest
    cost_part = 1.0 - (candidate.price or 0.0) / priciest if priciest > 0 else 1.0
    weights = route.weights
    total = weights.capability + weights.latency + weights.cost
    return (
        weights.capability * candidate.score
        + weights.latency * latency_part
        + weights.cost * cost_part
    ) / total


def _with_fallbacks(
    ordered: list[Candidate], eligible: set[str], reports: Mapping[str, CandidateReport]
) -> list[str]:
    """The strategy's order, with the primary's own fallbacks right behind it."""
    if not ordered:
        return []
    chain = [ordered[0].model_id]
    for fallback in ordered[0].fallbacks:
        if fallback in eligible and fallback not in reports and fallback not in chain:
            chain.append(fallback)
    chain += [c.model_id for c in ordered[1:] if c.model_id not in chain]
    return chain


def _reason(
    route: Route,
    ordered: list[Candidate],
    dynamic: Dynamic,
    reports: Mapping[str, CandidateReport],
) -> str:
    if not ordered:
        why = "; ".join(
            f"{r.model_id}: {r.reason}" for r in sorted(reports.values(), key=lambda r: r.model_id)
        )
        return f"no eligible model: {why[:500]}" if why else "no eligible model"
    best = ordered[0]
    scope = (
        f"rule {route.rule_id}"
        if route.rule_id
        else "capabilities " + ",".join(c.value for c in route.requires)
    )
    ahead = []  # statically better candidates the dynamic state ruled out
    for candidate in route.eligible:
        if candidate.model_id == best.model_id:
            break
        report = reports.get(candidate.model_id)
        if report is not None and not report.eligible:
            ahead.append(f"{candidate.model_id}: {report.reason}")
    if route.explicit_chain:
        detail = "first available model of the explicit chain"
    elif route.strategy is Strategy.PRIORITY:
        detail = f"highest priority {best.priority}, capability score {best.score:.2f}"
    elif route.strategy is Strategy.COST:
        price = "unknown price" if best.price is None else f"blended ${best.price:g}/MTok"
        detail = f"cheapest: {price}"
    elif route.strategy is Strategy.LATENCY:
        observed = dynamic.p95_ms(best.model_id)
        detail = (
            f"fastest: observed p95 {observed:.0f} ms"
            if observed is not None
            else f"fastest: declared timeout {best.timeout_ms} ms (no observations yet)"
        )
    else:
        detail = "best weighted score of capability, latency and cost"
    text = f"{route.strategy.value} match: {best.model_id} for {scope} ({detail})"
    if ahead:
        text = f"failover from {'; '.join(ahead)}; {text}"
    return text
