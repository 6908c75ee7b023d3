"""What the model page (``/models/{id}``) shows beyond the manifest: its charts' buckets,
its version history, the rules that use it, its recent decisions with why, its drift.

Kept apart from the page's handler so each piece is a function of plain data (the
registry's rows, the router's table, the head's plan) and the handler only reads.

The charts' numbers are percentiles of raw samples (``buckets.time_buckets``). A week of
one busy model is tens of thousands of attempts, and reading them all takes far longer
than a page may (50,000 rows: about 450 ms on SQLite). A bucket whose time has passed
(by ``SETTLE``: the log writer flushes in batches) never changes, so
:class:`BucketCache` keeps it and a render reads only the attempts since the oldest
bucket it does not hold: the open one, on every render but the first.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.base import errors
from reconciler.manifests import kinds as manifests
from reconciler.planning.plans import Change
from reconciler.routing import ranking
from reconciler.sources.git import Commit, GitSource
from reconciler.store.routing_logs import Observation
from reconciler.web.buckets import WINDOWS, Bucket, Window, time_buckets
from reconciler.web.scales import epoch, utc

SETTLE = dt.timedelta(minutes=2)
"""A bucket ended this long ago is complete: later rows for it are not expected."""

ROW_CAP = 200_000
"""Attempts one render reads at most (the first render of a busy model's week)."""

CACHED_WINDOWS = 2_000
"""(database, model, window) entries :class:`BucketCache` keeps, least recently used out."""


# ---------------------------------------------------------------- charts


@dataclasses.dataclass(frozen=True, slots=True)
class Read:
    """A window's buckets and what it took: ``rows`` read from the registry now, and
    whether ``ROW_CAP`` cut the read (the oldest buckets then miss attempts)."""

    buckets: list[Bucket]
    rows: int
    capped: bool

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.buckets)


class BucketCache:
    """The complete buckets of each (database, model, window), so that a render reads
    only the attempts of the buckets still open."""

    def __init__(self, size: int = CACHED_WINDOWS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._kept: collections.OrderedDict[tuple[str, str, str], dict[float, Bucket]] = (
            collections.OrderedDict()
        )

    def read(
        self,
        where: str,
        model_id: str,
        window: Window,
        now: dt.datetime,
        attempts: Callable[[dt.datetime, int], Sequence[Observation]],
    ) -> Read:
        """The window's buckets ending at ``now``; ``attempts(since, limit)`` reads the
        registry (newest first), and raises while it cannot be read."""
        step = window.step.total_seconds()
        first = (math.floor(epoch(now) / step) - (window.count - 1)) * step
        starts = [first + i * step for i in range(window.count)]
        key = (where, model_id, window.name)
        with self._lock:
            kept = dict(self._kept.get(key, {}))
        missing = [s for s in starts if s not in kept]
        if not missing:  # every bucket complete and kept (nothing is open: cannot happen)
            return Read([kept[s] for s in starts], 0, capped=False)
        since = utc(missing[0])
        found = attempts(since, ROW_CAP)
        capped = len(found) >= ROW_CAP
        fresh = time_buckets(
            ((o.timestamp, o.latency_ms, o.success, o.cost_usd) for o in found),
            window,
            end=now,
        )
        settled = epoch(now - SETTLE)
        oldest_read = epoch(found[-1].timestamp) if capped else -math.inf
        out: list[Bucket] = []
        for start, bucket in zip(starts, fresh, strict=True):
            if start in kept:
                out.append(kept[start])
                continue
            out.append(bucket)
            if start + step <= settled and start >= oldest_read:
                kept[start] = bucket
        with self._lock:
            self._kept[key] = {s: kept[s] for s in starts if s in kept}
            self._kept.move_to_end(key)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return Read(out, len(found), capped)


def window_of(name: str) -> Window:
    return WINDOWS.get(name, WINDOWS["24h"])


# ---------------------------------------------------------------- version history


@dataclasses.dataclass(frozen=True, slots=True)
class Version:
    """A version the registry has applied, newest first, with the commit it was applied
    at as git tells it; ``status`` is ``live``, ``quarantined`` or ``earlier``."""

    version: str
    revision: str | None
    status: str
    commit: Commit | None = None
    live_since: str | None = None


def versions(
    applied: Sequence[Mapping[str, Any]],
    live: str | None,
    quarantined: Iterable[str],
    stretches: Sequence[Any] = (),
) -> list[Version]:
    """Every version of ``registry.version_history`` (oldest first there), newest first."""
    held = set(quarantined)
    since = {s.version: s.since for s in stretches}
    out = []
    for row in reversed(applied):
        version = str(row["version"])
        status = "live" if version == live else "quarantined" if version in held else "earlier"
        out.append(Version(version, row.get("revision"), status, live_since=since.get(version)))
    return out


class Commits:
    """Commits of the fleet repository by sha, read once each (a commit never changes)."""

    def __init__(self, size: int = 5_000) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._known: collections.OrderedDict[str, Commit | None] = collections.OrderedDict()

    def named(self, shas: Iterable[str], source: Callable[[], object]) -> dict[str, Commit]:
        """The commits of ``shas`` that git has; ``source()`` opens the repository, only
        when a sha is not known yet."""
        wanted = [s for s in dict.fromkeys(shas) if s]
        with self._lock:
            unknown = [s for s in wanted if s not in self._known]
        if unknown:
            opened = source()
            found = {
                sha: opened.commit(sha) if isinstance(opened, GitSource) else None
                for sha in unknown
            }
            if isinstance(opened, GitSource):
                opened.close()
            with self._lock:
                self._known.update(found)
                while len(self._known) > self.size:
                    self._known.popitem(last=False)
        with self._lock:
            return {s: c for s in wanted if (c := self._known.get(s)) is not None}


# ---------------------------------------------------------------- rules


@dataclasses.dataclass(frozen=True, slots=True)
class RuleUse:
    """A rule that names the model in its chain, or whose requirements it meets, and
    where the model stands in the rule's decision now."""

    rule: manifests.RoutingRule
    how: str
    chosen: str | None  # the model the rule picks now
    standing: ranking.CandidateReport | None  # this model in that decision
    why_not: str = ""  # the decision could not be made (no route)


def uses(model: manifests.AIModel, rule: manifests.RoutingRule) -> str:
    """How ``rule`` uses ``model``, in words, or "" when it does not."""
    spec = rule.payload
    if model.meta.id in spec.chain:
        place = spec.chain.index(model.meta.id) + 1
        return f"named in its chain, {_ordinal(place)} of {len(spec.chain)}"
    if spec.chain:
        return ""
    scores = model.payload.capabilities
    if all(scores.get(c, -1.0) >= spec.min_score for c in spec.requires):
        said = ", ".join(f"{c} {scores[c]:.2f}" for c in spec.requires)
        return f"meets its requirements ({said}; minimum {spec.min_score:.2f})"
    return ""


def rules_using(
    model: manifests.AIModel,
    rules: Mapping[str, manifests.RoutingRule],
    decide: Callable[[ranking.TaskRequest], ranking.RoutingDecision],
) -> list[RuleUse]:
    out = []
    for ident in sorted(rules):
        rule = rules[ident]
        how = uses(model, rule)
        if not how:
            continue
        if not rule.payload.enabled:
            out.append(RuleUse(rule, how, None, None, "the rule is disabled"))
            continue
        try:
            decision = decide(ranking.TaskRequest(task_type=rule.payload.task_type))
        except errors.GroveError as exc:  # no route, or no eligible model
            found = getattr(exc, "decision", None)
            standing = _standing(found, model.meta.id) if found is not None else None
            out.append(RuleUse(rule, how, None, standing, str(exc)))
            continue
        why_not = "" if decision.model_id else decision.reason
        standing = _standing(decision, model.meta.id)
        out.append(RuleUse(rule, how, decision.model_id, standing, why_not))
    return out


def _standing(decision: ranking.RoutingDecision, model_id: str) -> ranking.CandidateReport | None:
    return next((c for c in decision.candidates if c.model_id == model_id), None)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---------------------------------------------------------------- decisions


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    model_id: str
    number: int
    success: bool
    latency_ms: float
    error_kind: str | None
    error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """One logged attempt of the model, and the request it belonged to."""

    at: str
    request_id: str
    task_type: str
    capability: str
    rule_id: str | None
    strategy: str
    reason: str
    chain: tuple[str, ...]
    revision: str | None
    attempt: Attempt
    cost_usd: float | None
    attempts: tuple[Attempt, ...]  # every attempt of the request, in order

    @property
    def failover(self) -> bool:
        return len(self.attempts) > 1 or self.attempt.number > 1


def _attempt(row: Mapping[str, Any]) -> Attempt:
    decision = row.get("routingDecision") or {}
    return Attempt(
        str(row.get("modelId", "")),
        int(row.get("attempt") or 1),
        bool(row.get("success")),
        float(row.get("latencyMs") or 0),
        row.get("errorKind"),
        decision.get("error") if isinstance(decision, dict) else None,
    )


def needs_siblings(rows: Sequence[Mapping[str, Any]]) -> dict[str, dt.datetime]:
    """The requests of ``rows`` that failed over (their other attempts are worth reading):
    request id -> the time of this model's attempt."""
    out = {}
    for row in rows:
        decision = row.get("routingDecision") or {}
        reason = str(decision.get("reason", "")) if isinstance(decision, dict) else ""
        if (row.get("attempt") or 1) > 1 or not row.get("success") or "failover" in reason:
            try:
                out[str(row["requestId"])] = dt.datetime.fromisoformat(str(row["timestamp"]))
            except ValueError:
                continue
    return out


def decisions(
    rows: Sequence[Mapping[str, Any]], siblings: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[Decision]:
    out = []
    for row in rows:
        raw = row.get("routingDecision")
        decision: dict[str, Any] = raw if isinstance(raw, dict) else {}
        mine = _attempt(row)
        others = siblings.get(str(row.get("requestId")), ())
        attempts = tuple(_attempt(r) for r in others) or (mine,)
        chain = decision.get("chain")
        out.append(
            Decision(
                at=str(row.get("timestamp", "")),
                request_id=str(row.get("requestId", "")),
                task_type=str(row.get("taskType", "")),
                capability=str(row.get("capabilityRequired", "")),
                rule_id=decision.get("ruleId"),
                strategy=str(decision.get("strategy", "")),
                reason=str(decision.get("reason", "")),
                chain=tuple(str(c) for c in chain) if isinstance(chain, list) else (),
                revision=decision.get("revision"),
                attempt=mine,
                cost_usd=row.get("costUsd"),
                attempts=attempts,
            )
        )
    return out


# ---------------------------------------------------------------- drift


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    path: str
    before: str
    after: str


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """What the branch head's plan would do to the model: drift to correct (the registry
    changed outside git) or a change from git, field by field."""

    change: Change
    drift: bool
    fields: tuple[Field, ...]


def pending_of(model_id: str, changes: Iterable[Change], drifted: Iterable[str]) -> Pending | None:
    drift = f"{manifests.KIND_MODEL}/{model_id}" in set(drifted)
    for change in changes:
        if change.key == (manifests.KIND_MODEL, model_id):
            fields = tuple(Field(f.path, _json(f.before), _json(f.after)) for f in change.fields)
            return Pending(change, drift or change.corrects_drift, fields)
    return None


def _json(value: object) -> str:
    if value is None:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 500 else text[:500] + "…"
