"""Routing decisions: which model answers a task, in which order the others stand by, and why.

Pure and precomputed. :class:`RoutingTable` is built once per snapshot of
reconciled state: for every rule it keeps the statically eligible candidates
(enabled, every required capability at ``minScore``, static constraints) with
the reasons the others were excluded, already ordered for the static
strategies (priority, cost). A decision then only applies what changes
between snapshots (open circuits, sunset dates, observed latency) to that
short list: no I/O and no scan of the fleet. Capability-only requests get
the same treatment, cached per capability set. Circuits and observed latency
belong to a model *version*: each candidate carries its
:class:`~reconciler.routing.circuits.ModelVersion`, made once per snapshot, so a
decision allocates no key.

Ordering (DESIGN section 7): ``priority`` by priority, then capability score,
then id; ``latency`` by observed p95 (declared timeout when unobserved);
``cost`` by blended price; ``balanced`` by the rule's weights over normalized
capability, latency and cost. An explicit ``chain`` is honoured as written.
The primary's own ``fallbacks`` follow it in the failover chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.base import errors
from reconciler.manifests import kinds as manifests
from reconciler.manifests import scoring
from reconciler.routing import canary, circuits

Strategy = manifests.Strategy
MAX_CAPABILITY_ROUTES = 1024
CHAIN_SPARE = 2  # models kept beyond maxAttempts, for those skipped at call time


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
    model: str | None = None  # a model by id: it first, then its fallbacks (the gateway)

    def wanted(self) -> tuple[manifests.CapabilityType, ...]:
        caps = list(self.capabilities)
        if self.required_capability is not None:
            caps.insert(0, self.required_capability)
        return tuple(dict.fromkeys(manifests.CapabilityType(c) for c in caps))


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    model_id: str
    key: circuits.ModelVersion  # what its circuit and observed latency are kept for
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
        # Written by hand, not by `base.serial` like the other types: an answer of
        # /api/routing/recommend and /execute holds one per model; a TypeAdapter costs 1.7-2.2x.
        return {
            "modelId": self.model_id,
            "eligible": self.eligible,
            "rank": self.rank,
            "score": None if self.score is None else round(self.score, 6),
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True)
class RoutingDecision:
    """The chosen model, the failover chain and why. ``candidates`` (every model with its
    rank or the reason it was left out) is computed when first read, so routing a
    request never pays for explaining the whole fleet."""

    model_id: str | None
    chain: tuple[str, ...]
    rule_id: str | None
    task_type: str | None
    strategy: str
    reason: str
    revision: str | None
    serial: int
    max_attempts: int
    degraded: bool = False
    # models that ranked ahead of the chain's first and were passed over (circuit open,
    # too slow), with why: a fallback the caller can be told about
    passed_over: tuple[tuple[str, str], ...] = ()
    explain: Callable[[], tuple[CandidateReport, ...]] = dataclasses.field(
        default=tuple, repr=False, compare=False
    )

    @functools.cached_property
    def candidates(self) -> tuple[CandidateReport, ...]:
        return self.explain()

    def to_json(self) -> dict[str, Any]:
        # By hand, as CandidateReport's: on the routing answers' path (see there).
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


@dataclasses.dataclass(frozen=True)
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

    @functools.cached_property
    def by_id(self) -> dict[str, Candidate]:
        return {c.model_id: c for c in self.eligible}


@dataclasses.dataclass(frozen=True, slots=True)
class Dynamic:
    """What changes between snapshots, supplied by the router at decision time."""

    blocked: Callable[[circuits.ModelVersion], str | None]  # why a version is skipped now
    p95_ms: Callable[[circuits.ModelVersion], float | None]  # observed latency of a version
    today: dt.date
    # None: ask ``blocked`` about every version
    open_circuits: frozenset[circuits.ModelVersion] | None = None
    stats_epoch: int = 0  # changes when observed latencies change

    def is_blocked(self, key: circuits.ModelVersion) -> str | None:
        if self.open_circuits is not None and key not in self.open_circuits:
            return None
        return self.blocked(key)


class NoRoute(errors.PermanentError, LookupError):
    """The request names no rule and no capability, or an unknown task type.

    Still a ``LookupError``, as it was before the error tree."""


class RoutingTable:
    def __init__(
        self,
        models: Mapping[str, manifests.AIModel],
        rules: Mapping[str, manifests.RoutingRule],
        *,
        revision: str | None,
        serial: int,
        splits: Mapping[str, canary.Split] | None = None,
    ) -> None:
        self.models = models
        self.revision = revision
        self.serial = serial
        # open rollouts: which version of a model a call goes to (`canary.Split`)
        self.splits: Mapping[str, canary.Split] = splits or {}
        # the version of each model this snapshot serves: circuits and latencies are its
        self.versions: dict[str, circuits.ModelVersion] = {
            ident: circuits.ModelVersion(ident, model.meta.version)
            for ident, model in models.items()
        }
        # every version that serves: the live ones and the stable ones of open rollouts
        self.serving: tuple[circuits.ModelVersion, ...] = (
            *self.versions.values(),
            *(split.stable[1] for split in self.splits.values()),
        )
        self.enabled = tuple(
            sorted(i for i, m in models.items() if m.payload.state is manifests.ModelState.ENABLED)
        )
        self._enabled_set = frozenset(self.enabled)
        self.by_task: dict[str, Route] = {}
        for ident, rule in sorted(rules.items()):
            if rule.payload.enabled:
                self.by_task[rule.payload.task_type] = self._route(ident, rule.payload)
        self._by_capabilities: dict[tuple[tuple[str, ...], float], Route] = {}
        self._narrow_cache: dict[tuple[str | None, tuple[str, ...], float], Route] = {}
        self._dynamic_orders: dict[int, tuple[int, Route, list[Candidate]]] = {}

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
            why = scoring.rule_exclusion(model.payload, rule)
            if why is not None:
                excluded.append((model_id, why))
                continue
            spec = model.payload
            match = scoring.match_capabilities(rule.requires, spec.capabilities)
            eligible.append(
                Candidate(
                    model_id=model_id,
                    key=self.versions[model_id],
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

    def decide(self, request: TaskRequest, dynamic: Dynamic, *, note: str = "") -> RoutingDecision:
        """The chain walks the route's order and stops once it holds enough models for
        failover: the cost depends on the chain, not on the size of the fleet. ``note``
        ends the reason (the router's word on an override it ignores)."""
        if request.model is not None:
            return self.direct(request.model, note=note)
        route = self.route_for(request)
        wanted = route.failover.max_attempts + CHAIN_SPARE
        ahead: list[tuple[Candidate, str]] = []  # skipped before the first usable model
        chain: list[Candidate] = []
        for candidate in self._ordered(route, dynamic):
            why = self._dynamic_exclusion(candidate, route, dynamic)
            if why is not None:
                if not chain:
                    ahead.append((candidate, why))
                continue
            chain.append(candidate)
            if len(chain) >= wanted:
                break
        ids = _with_fallbacks(chain, route, self, dynamic)
        reason = _reason(route, chain[0] if chain else None, ahead, dynamic)
        return RoutingDecision(
            model_id=ids[0] if ids else None,
            chain=tuple(ids),
            rule_id=route.rule_id,
            task_type=route.task_type,
            strategy=route.strategy.value,
            reason=f"{reason}; {note}" if note else reason,
            revision=self.revision,
            serial=self.serial,
            max_attempts=route.failover.max_attempts,
            passed_over=tuple((c.model_id, why) for c, why in ahead) if ahead else (),
            explain=lambda: self._explain(route, tuple(ids), dynamic),
        )

    def _explain(
        self, route: Route, chain: tuple[str, ...], dynamic: Dynamic
    ) -> tuple[CandidateReport, ...]:
        rank = {model_id: i for i, model_id in enumerate(chain, start=1)}
        reports = []
        for candidate in route.eligible:
            place = rank.get(candidate.model_id)
            if place is not None:
                role = "primary" if place == 1 else f"fallback {place - 1}"
                reports.append(
                    CandidateReport(candidate.model_id, True, place, candidate.score, role)
                )
                continue
            why = self._dynamic_exclusion(candidate, route, dynamic)
            reports.append(
                CandidateReport(
                    candidate.model_id,
                    why is None,
                    None,
                    candidate.score,
                    why or "eligible, beyond the failover chain",
                )
            )
        reports += [CandidateReport(m, False, None, None, why) for m, why in route.excluded]
        return tuple(sorted(reports, key=lambda r: (r.rank is None, r.rank or 0, r.model_id)))

    def _dynamic_exclusion(
        self, candidate: Candidate, route: Route, dynamic: Dynamic
    ) -> str | None:
        if candidate.sunset is not None and candidate.sunset < dynamic.today:
            return f"past its sunset date {candidate.sunset}"
        blocked = dynamic.is_blocked(candidate.key)
        if blocked is not None:
            split = self.splits.get(candidate.model_id) if self.splits else None
            # a rollout's canary kept out by its circuit: the stable version still serves
            if split is None or dynamic.is_blocked(split.stable[1]) is not None:
                return blocked
        if route.max_latency_ms is not None:
            p95 = dynamic.p95_ms(candidate.key)
            if p95 is not None and p95 > route.max_latency_ms:
                return f"observed p95 {p95:.0f} ms > maxLatencyMs {route.max_latency_ms}"
        return None

    def _ordered(self, route: Route, dynamic: Dynamic) -> Sequence[Candidate]:
        """The route's order: static, or by observed latency (recomputed once per epoch)."""
        if route.explicit_chain or route.strategy in (Strategy.PRIORITY, Strategy.COST):
            return route.eligible
        cached = self._dynamic_orders.get(id(route))
        if cached is not None and cached[0] == dynamic.stats_epoch and cached[1] is route:
            return cached[2]
        if route.strategy is Strategy.LATENCY:
            order = sorted(
                route.eligible, key=lambda c: (_latency(c, dynamic), -c.score, c.model_id)
            )
        else:
            pool = list(route.eligible)
            latency = {c.model_id: _latency(c, dynamic) for c in pool}
            slowest = max(latency.values(), default=1.0) or 1.0
            priciest = max((c.price or 0.0 for c in pool), default=0.0)
            order = sorted(
                pool,
                key=lambda c: (
                    -_balanced(c, latency[c.model_id] / slowest, priciest, route),
                    c.model_id,
                ),
            )
        if len(self._dynamic_orders) >= MAX_CAPABILITY_ROUTES:
            self._dynamic_orders.clear()
        self._dynamic_orders[id(route)] = (dynamic.stats_epoch, route, order)
        return order

    def discover(
        self, capabilities: Sequence[manifests.CapabilityType], min_score: float = 0.0
    ) -> list[tuple[float, manifests.AIModel]]:
        """Enabled models with every capability at ``min_score``: (score, model), best first
        (score, then priority, then id). Discovery for the API and the Python library."""
        found = []
        for model_id in self.enabled:
            model = self.models[model_id]
            match = scoring.match_capabilities(capabilities, model.payload.capabilities)
            if match.meets(min_score):
                found.append((match.score, model))
        found.sort(key=lambda item: (-item[0], -item[1].payload.priority, item[1].id))
        return found

    def direct(self, model_id: str, *, note: str = "") -> RoutingDecision:
        """A model named by id (the gateway's ``model``): it, then its own enabled
        ``fallbacks`` in their order, each tried once (circuits skip a blocked one when
        called). NoRoute when no enabled model has that id."""
        model = self.models.get(model_id)
        if model is None or model.payload.state is not manifests.ModelState.ENABLED:
            state = "no model" if model is None else f"model is {model.payload.state.value}:"
            raise NoRoute(f"{state} {model_id!r} cannot serve requests")
        enabled = self._enabled_set
        fallbacks = [f for f in model.payload.fallbacks if f in enabled and f != model_id]
        chain = (model_id, *dict.fromkeys(fallbacks))
        listed = f", then its fallbacks {', '.join(chain[1:])}" if len(chain) > 1 else ""
        reason = f"named model: {model_id}{listed}"
        return RoutingDecision(
            model_id=model_id,
            chain=chain,
            rule_id=None,
            task_type=None,
            strategy="direct",
            reason=f"{reason}; {note}" if note else reason,
            revision=self.revision,
            serial=self.serial,
            max_attempts=len(chain),
            explain=lambda: tuple(
                CandidateReport(m, True, i + 1, None, "named" if i == 0 else "fallback")
                for i, m in enumerate(chain)
            ),
        )

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
            reason=f"round-robin fallback: {reason}",
            revision=self.revision,
            serial=self.serial,
            max_attempts=min(3, len(chain)) or 1,
            degraded=True,
            explain=lambda: tuple(
                CandidateReport(m, True, i + 1, None, "round-robin") for i, m in enumerate(chain)
            ),
        )


def _static_key(strategy: Strategy) -> Callable[[Candidate], tuple[Any, ...]]:
    if strategy is Strategy.COST:
        return lambda c: (math.inf if c.price is None else c.price, -c.score, c.model_id)
    return lambda c: (-c.priority, -c.score, c.model_id)


def _latency(candidate: Candidate, dynamic: Dynamic) -> float:
    observed = dynamic.p95_ms(candidate.key)
    return observed if observed is not None else float(candidate.timeout_ms)


def _balanced(
    candidate: Candidate, relative_latency: float, priciest: float, route: Route
) -> float:
    """The rule's weighted sum of capability score, speed and cheapness, each in [0, 1]:
    speed relative to the slowest candidate, price to the priciest (computed once per
    ordering, so ordering n candidates costs n log n, not n squared)."""
    latency_part = 1.0 - relative_latency
    cost_part = 1.0 - (candidate.price or 0.0) / priciest if priciest > 0 else 1.0
    weights = route.weights
    total = weights.capability + weights.latency + weights.cost
    return (
        weights.capability * candidate.score
        + weights.latency * latency_part
        + weights.cost * cost_part
    ) / total


def _with_fallbacks(
    chain: list[Candidate], route: Route, table: RoutingTable, dynamic: Dynamic
) -> list[str]:
    """The chain's order, with the primary's own fallbacks right behind it."""
    if not chain:
        return []
    eligible = route.by_id
    ids = [chain[0].model_id]
    for fallback in chain[0].fallbacks:
        candidate = eligible.get(fallback)
        if (
            candidate is not None
            and fallback not in ids
            and table._dynamic_exclusion(candidate, route, dynamic) is None
        ):
            ids.append(fallback)
    ids += [c.model_id for c in chain[1:] if c.model_id not in ids]
    return ids


def _reason(
    route: Route, best: Candidate | None, ahead: list[tuple[Candidate, str]], dynamic: Dynamic
) -> str:
    if best is None:
        why = "; ".join(f"{c.model_id}: {w}" for c, w in ahead[:20])
        excluded = "; ".join(f"{m}: {w}" for m, w in route.excluded[:20])
        detail = "; ".join(part for part in (why, excluded) if part)
        return f"no eligible model: {detail[:500]}" if detail else "no eligible model"
    scope = (
        f"rule {route.rule_id}"
        if route.rule_id
        else "capabilities " + ",".join(c.value for c in route.requires)
    )
    if route.explicit_chain:
        detail = "first available model of the explicit chain"
    elif route.strategy is Strategy.PRIORITY:
        detail = f"highest priority {best.priority}, capability score {best.score:.2f}"
    elif route.strategy is Strategy.COST:
        price = "unknown price" if best.price is None else f"blended ${best.price:g}/MTok"
        detail = f"cheapest: {price}"
    elif route.strategy is Strategy.LATENCY:
        observed = dynamic.p95_ms(best.key)
        detail = (
            f"fastest: observed p95 {observed:.0f} ms"
            if observed is not None
            else f"fastest: declared timeout {best.timeout_ms} ms (no observations yet)"
        )
    else:
        detail = "best weighted score of capability, latency and cost"
    text = f"{route.strategy.value} match: {best.model_id} for {scope} ({detail})"
    if ahead:
        skipped = "; ".join(f"{c.model_id}: {why}" for c, why in ahead[:5])
        text = f"failover from {skipped}; {text}"
    return text
