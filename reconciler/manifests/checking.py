"""Checks across objects: references, cycles, servability, duplicates, lifecycle dates.

Called by `validating` after `loading` has produced valid objects, and later
by the reconciler before it plans. Pure: it reads the objects and a date and
returns diagnostics that point at the exact line of the offending reference.

When the load was incomplete (a file could not be parsed at all), checks that
need the whole fleet (dangling references, servability) are skipped: their
answer would be noise until the broken file is fixed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence

from reconciler.base import diagnostics
from reconciler.base.diagnostics import Diagnostic
from reconciler.manifests import kinds as manifests
from reconciler.manifests import scoring
from reconciler.manifests.loading import LoadResult, Located

SUNSET_WARNING_DAYS = 30


def check(
    loaded: LoadResult,
    today: dt.date,
    *,
    removing: frozenset[str] = frozenset(),
    judged_elsewhere: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    """Every cross-object problem of a loaded fleet.

    The planner passes ``removing`` (models the plan removes) and
    ``judged_elsewhere`` (rules whose servability a safety check judges): references
    to the first and servability of the second are safety violations there
    (overridable with ``--force``), not validation errors here.
    """
    found: list[Diagnostic] = []
    found += _duplicates(loaded.objects)
    models = _first_by_id(loaded.objects, manifests.KIND_MODEL)
    rules = [item for item in loaded.objects if item.kind == manifests.KIND_RULE]
    known = set(models) | set(removing)
    known |= {i for kind, i in loaded.broken_ids if kind == manifests.KIND_MODEL}
    whole = loaded.complete and not loaded.broken_ids
    found += _model_references(models.items(), models, known, check_dangling=loaded.complete)
    found += _cycles(models)
    found += _rules(
        [item for item in rules if item.id not in judged_elsewhere],
        models,
        known,
        check_dangling=loaded.complete,
        check_serving=whole,
    )
    found += _lifecycle(models.items(), today)
    return found


class Known:
    """The model ids a reference may name: the fleet's models and those being removed
    (whose references are a safety violation, P005, rather than an error)."""

    def __init__(self, models: Container[str], removing: Container[str]) -> None:
        self.models = models
        self.removing = removing

    def __contains__(self, ident: object) -> bool:
        return ident in self.models or ident in self.removing


def check_some(
    items: Sequence[Located],
    models: Mapping[str, Located],
    today: dt.date,
    *,
    removing: frozenset[str] = frozenset(),
    judged_elsewhere: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    """What :func:`check` reports at ``items`` (some objects of a complete fleet without
    duplicate ids, duplicate task types or fallback cycles, whose models are ``models``),
    without looking at the rest: the reconciler's incremental check, over the objects
    that changed and those that name them (see `reconciling`)."""
    known = Known(models, removing)
    mine = [(item.id, item) for item in items if item.kind == manifests.KIND_MODEL]
    rules = [
        item
        for item in items
        if item.kind == manifests.KIND_RULE and item.id not in judged_elsewhere
    ]
    found = _model_references(mine, models, known, check_dangling=True)
    found += _rules(rules, models, known, check_dangling=True, check_serving=True)
    found += _lifecycle(mine, today)
    return found


def has_cycle(starts: Iterable[str], models: Mapping[str, Located]) -> bool:
    """Whether a fallback cycle passes through a model reachable from ``starts`` (a
    fleet whose other models formed no cycle gets one only through a changed model)."""
    reachable: dict[str, Located] = {}
    pending = [ident for ident in starts if ident in models]
    while pending:
        ident = pending.pop()
        if ident in reachable:
            continue
        reachable[ident] = models[ident]
        pending.extend(t for t in _model(models[ident]).payload.fallbacks if t in models)
    return bool(_cycles(reachable))


def references(item: Located) -> tuple[str, ...]:
    """The model ids an object names: a model's fallbacks and successor, a rule's chain."""
    obj = item.obj
    if isinstance(obj, manifests.AIModel):
        life = obj.payload.lifecycle
        successor = (life.successor,) if life is not None and life.successor else ()
        return (*obj.payload.fallbacks, *successor)
    if isinstance(obj, manifests.RoutingRule):
        return tuple(obj.payload.chain)
    return ()


def _first_by_id(objects: Sequence[Located], kind: str) -> dict[str, Located]:
    out: dict[str, Located] = {}
    for item in objects:
        if item.kind == kind:
            out.setdefault(item.id, item)
    return out


def _duplicates(objects: Sequence[Located]) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    places: dict[tuple[str, str], list[Located]] = defaultdict(list)
    tasks: dict[str, list[Located]] = defaultdict(list)
    for item in objects:
        places[(item.kind, item.id)].append(item)
        if isinstance(item.obj, manifests.RoutingRule):
            tasks[item.obj.payload.task_type].append(item)
    for (kind, ident), where in places.items():
        for item in where if len(where) > 1 else ():
            others = ", ".join(
                f"{other.file}:{other.line_of('meta', 'id')}"
                for other in where
                if other is not item
            )
            found.append(
                diagnostics.error(
                    item.file,
                    item.line_of("meta", "id"),
                    "R001",
                    f"{kind} id {ident} is defined more than once; also at {others}",
                    path="meta.id",
                )
            )
    for task, where in tasks.items():
        for item in where if len(where) > 1 else ():
            others = ", ".join(f"{o.file} ({o.id})" for o in where if o is not item)
            found.append(
                diagnostics.error(
                    item.file,
                    item.line_of("payload", "taskType"),
                    "R007",
                    f"taskType {task} is claimed by more than one rule; also by {others}",
                    path="payload.taskType",
                )
            )
    return found


def _model_references(
    items: Iterable[tuple[str, Located]],
    models: Mapping[str, Located],
    known: Container[str],
    *,
    check_dangling: bool,
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for ident, item in items:
        spec = _model(item).payload
        for index, target in enumerate(spec.fallbacks):
            line = item.line_of("payload", "fallbacks", index)
            path = f"payload.fallbacks[{index}]"
            if target not in known:
                if check_dangling:
                    found.append(
                        diagnostics.error(
                            item.file,
                            line,
                            "R002",
                            f"model {ident} falls back to {target}, which is not a model here",
                            path=path,
                        )
                    )
            elif target in models and _state(models[target]) is not manifests.ModelState.ENABLED:
                found.append(
                    diagnostics.warning(
                        item.file,
                        line,
                        "R008",
                        f"model {ident} falls back to {target}, which is "
                        f"{_state(models[target]).value}; it will be skipped",
                        path=path,
                    )
                )
        successor = spec.lifecycle.successor if spec.lifecycle else None
        if successor is not None and successor not in known and check_dangling:
            found.append(
                diagnostics.error(
                    item.file,
                    item.line_of("payload", "lifecycle", "successor"),
                    "R009",
                    f"model {ident} names successor {successor}, which is not a model here",
                    path="payload.lifecycle.successor",
                )
            )
    return found


def _cycles(models: Mapping[str, Located]) -> list[Diagnostic]:
    """Each fallback cycle once, reported at its smallest id (iterative DFS)."""
    edges = {
        ident: [t for t in _model(item).payload.fallbacks if t in models]
        for ident, item in models.items()
    }
    color: dict[str, int] = {}  # 0 absent = unvisited, 1 on stack, 2 done
    seen_cycles: set[tuple[str, ...]] = set()
    found: list[Diagnostic] = []
    for start in sorted(edges):
        if color.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = [start]
        color[start] = 1
        while stack:
            node, index = stack[-1]
            targets = edges[node]
            if index >= len(targets):
                stack.pop()
                trail.pop()
                color[node] = 2
                continue
            stack[-1] = (node, index + 1)
            target = targets[index]
            state = color.get(target, 0)
            if state == 1:
                cycle = tuple(trail[trail.index(target) :])
                pivot = cycle.index(min(cycle))
                canonical = cycle[pivot:] + cycle[:pivot]
                if canonical not in seen_cycles:
                    seen_cycles.add(canonical)
                    found.append(_cycle_error(models, canonical))
            elif state == 0:
                color[target] = 1
                stack.append((target, 0))
                trail.append(target)
    return found


def _cycle_error(models: Mapping[str, Located], cycle: tuple[str, ...]) -> Diagnostic:
    head = cycle[0]
    nxt = cycle[1] if len(cycle) > 1 else head
    item = models[head]
    index = list(_model(item).payload.fallbacks).index(nxt)
    loop = " -> ".join((*cycle, head))
    return diagnostics.error(
        item.file,
        item.line_of("payload", "fallbacks", index),
        "R004",
        f"fallbacks form a cycle: {loop}; a failover chain must end",
        path=f"payload.fallbacks[{index}]",
    )


def _rules(
    rules: Sequence[Located],
    models: Mapping[str, Located],
    known: Container[str],
    *,
    check_dangling: bool,
    check_serving: bool,
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    serving = _ServingIndex(models)
    for item in rules:
        assert isinstance(item.obj, manifests.RoutingRule)
        rule = item.obj.payload
        for index, target in enumerate(rule.chain):
            line = item.line_of("payload", "chain", index)
            path = f"payload.chain[{index}]"
            if target not in known:
                if check_dangling:
                    found.append(
                        diagnostics.error(
                            item.file,
                            line,
                            "R003",
                            f"rule {item.id} chains to {target}, which is not a model here",
                            path=path,
                        )
                    )
                continue
            if target not in models:
                continue
            spec = _model(models[target]).payload
            match = scoring.match_capabilities(rule.requires, spec.capabilities)
            if not match.meets(rule.min_score):
                found.append(
                    diagnostics.error(
                        item.file,
                        line,
                        "R005",
                        f"rule {item.id} chains to {target}, which "
                        + ("" if match.missing else "scores ")
                        + scoring.shortfall(match, rule.min_score),
                        path=path,
                    )
                )
            elif spec.state is not manifests.ModelState.ENABLED:
                found.append(
                    diagnostics.warning(
                        item.file,
                        line,
                        "R008",
                        f"rule {item.id} chains to {target}, which is {spec.state.value}",
                        path=path,
                    )
                )
        if check_serving and rule.enabled and not _servable(rule, models, serving):
            scope = "no enabled model of its chain" if rule.chain else "no enabled model"
            limits = " within its constraints" if rule.constraints else ""
            found.append(
                diagnostics.error(
                    item.file,
                    item.line_of("payload", "requires"),
                    "R006",
                    f"rule {item.id} (taskType {rule.task_type}) cannot be served: {scope} "
                    f"has {', '.join(c.value for c in rule.requires)} "
                    f">= {rule.min_score:g}{limits}",
                    path="payload.requires",
                )
            )
    return found


def eligible(spec: manifests.ModelSpec, rule: manifests.RuleSpec) -> bool:
    """Can ``spec`` serve ``rule`` on static grounds (state, capabilities, constraints)?"""
    return scoring.rule_exclusion(spec, rule) is None


def servers(rule: manifests.RuleSpec, models: Mapping[str, Located]) -> list[str]:
    """Ids of the enabled models that can serve ``rule`` on static grounds."""
    if rule.chain:  # only the chain's models are looked at
        models = {ident: models[ident] for ident in rule.chain if ident in models}
    return spec_servers(rule, {ident: _model(item).payload for ident, item in models.items()})


def has_server(rule: manifests.RuleSpec, models: Mapping[str, manifests.ModelSpec]) -> bool:
    """Whether any model can serve ``rule``; stops at the first one."""
    pool = rule.chain if rule.chain else models
    return any(ident in models and eligible(models[ident], rule) for ident in pool)


def spec_servers(rule: manifests.RuleSpec, models: Mapping[str, manifests.ModelSpec]) -> list[str]:
    """:func:`servers` over bare model specs (live or desired)."""
    pool = list(rule.chain) if rule.chain else sorted(models)
    return [ident for ident in pool if ident in models and eligible(models[ident], rule)]


class _ServingIndex:
    """Enabled models per capability, best score first, so a rule's check stops early.

    Without it, checking R rules against M models costs R x M; with it a rule
    looks only at models that reach ``minScore`` on its first capability. Built on
    its first question, so a check that asks none (no rule without a chain) pays nothing.
    """

    def __init__(self, models: Mapping[str, Located]) -> None:
        self.models = models
        self.by_capability: dict[manifests.CapabilityType, list[tuple[float, manifests.ModelSpec]]]
        self.by_capability = defaultdict(list)
        self.built = False

    def _build(self) -> None:
        self.built = True
        for item in self.models.values():
            spec = _model(item).payload
            if spec.state is manifests.ModelState.ENABLED:
                for capability, score in spec.capabilities.items():
                    self.by_capability[capability].append((score, spec))
        for entries in self.by_capability.values():
            entries.sort(key=lambda entry: -entry[0])

    def servable(self, rule: manifests.RuleSpec) -> bool:
        if not self.built:
            self._build()
        for score, spec in self.by_capability.get(rule.requires[0], ()):
            if score < rule.min_score:
                return False
            if eligible(spec, rule):
                return True
        return False


def _servable(
    rule: manifests.RuleSpec, models: Mapping[str, Located], index: _ServingIndex
) -> bool:
    if rule.chain:
        return bool(servers(rule, models))
    return index.servable(rule)


def _lifecycle(items: Iterable[tuple[str, Located]], today: dt.date) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for ident, item in items:
        spec = _model(item).payload
        life = spec.lifecycle
        if life is None or spec.state is not manifests.ModelState.ENABLED:
            continue
        if life.sunset_date is not None:
            line = item.line_of("payload", "lifecycle", "sunsetDate")
            days = (life.sunset_date - today).days
            if days < 0:
                found.append(
                    diagnostics.error(
                        item.file,
                        line,
                        "L002",
                        f"model {ident} is enabled but its sunset date {life.sunset_date} "
                        "has passed; retire it or move traffic to its successor",
                        path="payload.lifecycle.sunsetDate",
                    )
                )
                continue
            if days <= SUNSET_WARNING_DAYS:
                found.append(
                    diagnostics.warning(
                        item.file,
                        line,
                        "L001",
                        f"model {ident} reaches its sunset date {life.sunset_date} in {days} "
                        "day(s)",
                        path="payload.lifecycle.sunsetDate",
                    )
                )
        if life.deprecation_date is not None and life.deprecation_date < today:
            found.append(
                diagnostics.warning(
                    item.file,
                    item.line_of("payload", "lifecycle", "deprecationDate"),
                    "L003",
                    f"model {ident} is deprecated since {life.deprecation_date}",
                    path="payload.lifecycle.deprecationDate",
                )
            )
    return found


def _model(item: Located) -> manifests.AIModel:
    assert isinstance(item.obj, manifests.AIModel)
    return item.obj


def _state(item: Located) -> manifests.ModelState:
    return _model(item).payload.state
