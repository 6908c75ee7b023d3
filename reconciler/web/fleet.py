"""What the fleet page and the model page say about each model: its two status axes
(git->registry sync, and health) and its numbers of the last 24 hours.

Kept apart from the pages so the live stream, the fleet page and the benchmark use
one definition. Sync is judged on the head's plan (`console.Overview`); health on
the model's circuit and its success rate; numbers come from one grouped query of
the routing log (`store.routing_logs.bucket_totals`), reused for a few seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from markupsafe import Markup

from reconciler.manifests import kinds as manifests
from reconciler.routing import circuits
from reconciler.store.routing_logs import BucketTotals
from reconciler.web import charts

if TYPE_CHECKING:
    from reconciler.web.console import Overview

DAY_BUCKETS = 24
BUCKET_S = 3600
NUMBERS_FRESH_S = 10.0
DEGRADED_BELOW = 0.95  # a success rate under this (with enough calls) is Degraded
MIN_CALLS_FOR_RATE = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Axis:
    """One status axis: its word, an icon character for those who do not read colour,
    the class that colours it, and a sentence of why."""

    word: str
    icon: str
    tone: str  # ok | warn | bad | idle
    why: str


@dataclasses.dataclass(frozen=True, slots=True)
class Numbers:
    """A model's last 24 hours: per hour, and in total."""

    times: tuple[dt.datetime, ...]
    mean_latency: tuple[float | None, ...]
    counts: tuple[int, ...]
    requests: int
    success_rate: float | None
    cost_usd: float

    @classmethod
    def empty(cls, start: dt.datetime) -> Numbers:
        times = tuple(start + dt.timedelta(seconds=BUCKET_S * i) for i in range(DAY_BUCKETS))
        return cls(times, (None,) * DAY_BUCKETS, (0,) * DAY_BUCKETS, 0, None, 0.0)


def numbers_of(start: dt.datetime, totals: Sequence[BucketTotals]) -> Numbers:
    latency: list[float | None] = [None] * DAY_BUCKETS
    counts = [0] * DAY_BUCKETS
    requests = successes = 0
    cost = 0.0
    for t in totals:
        if 0 <= t.bucket < DAY_BUCKETS:
            counts[t.bucket] += t.requests
            latency[t.bucket] = t.latency_ms_sum / t.requests if t.requests else None
        requests += t.requests
        successes += t.successes
        cost += t.cost_usd
    times = tuple(start + dt.timedelta(seconds=BUCKET_S * i) for i in range(DAY_BUCKETS))
    rate = successes / requests if requests else None
    return Numbers(times, tuple(latency), tuple(counts), requests, rate, cost)


class FleetNumbers:
    """Every model's :class:`Numbers`, from one query per :data:`NUMBERS_FRESH_S`."""

    def __init__(
        self,
        read: Callable[[dt.datetime, int], Mapping[str, Sequence[BucketTotals]]],
        fresh_s: float = NUMBERS_FRESH_S,
    ) -> None:
        self.read = read
        self.fresh_s = fresh_s
        self._lock = threading.Lock()
        self._last: tuple[float, dt.datetime, dict[str, Numbers]] | None = None
        # each model's sparkline, drawn once per set of numbers (1,000 cost ~100 ms a page)
        self._sparks: dict[str, Markup] = {}

    def get(self) -> tuple[dt.datetime, dict[str, Numbers]]:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.fresh_s:
                return self._last[1], self._last[2]
            now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
            start = now - dt.timedelta(seconds=BUCKET_S * (DAY_BUCKETS - 1))
            found = self.read(start, BUCKET_S)  # raises while the registry is away
            numbers = {ident: numbers_of(start, totals) for ident, totals in found.items()}
            self._last = (time.monotonic(), start, numbers)
            self._sparks = {}
            return start, numbers

    def sparkline(self, model_id: str, numbers: Numbers) -> Markup:
        """The card's sparkline of ``numbers``, drawn once while they are current."""
        drawn = self._sparks.get(model_id)
        if drawn is None:
            drawn = self._sparks[model_id] = sparkline(model_id, numbers)
        return drawn

    def last(self) -> tuple[dt.datetime, dict[str, Numbers]] | None:
        return None if self._last is None else (self._last[1], self._last[2])


@dataclasses.dataclass(frozen=True, slots=True)
class Standing:
    """What a page says about each model's two axes, read once per render: the head's
    overview, every model's numbers and the circuit of the version each serves."""

    overview: Overview | None
    numbers: Mapping[str, Numbers]
    circuits: Mapping[str, circuits.State]

    def sync(self, model: manifests.AIModel) -> Axis:
        return sync_of(model, self.overview)

    def health(self, model: manifests.AIModel) -> Axis:
        ident = model.meta.id
        return health_of(model, self.circuits.get(ident), self.numbers.get(ident))


def sync_of(model: manifests.AIModel, overview: Overview | None) -> Axis:
    key = (manifests.KIND_MODEL, model.meta.id)
    if overview is None or overview.status is None:
        return Axis("Unknown", "?", "idle", "the head of the branch has not been planned yet")
    revision = (overview.status.last_applied_revision or "")[:7] or "none"
    if key in overview.refused():
        return Axis("Failed", "✕", "bad", "the head's change to it is refused by a safety check")
    address = f"{manifests.KIND_MODEL}/{model.meta.id}"
    if address in overview.drifted:
        return Axis("OutOfSync", "≠", "warn", "the registry was changed outside git (drift)")
    pending = overview.pending().get(key)
    if pending is not None:
        return Axis("OutOfSync", "↻", "warn", f"the branch head would {pending} it")
    return Axis("Synced", "✓", "ok", f"as in git at {revision}")


def health_of(
    model: manifests.AIModel,
    circuit: circuits.State | None,
    numbers: Numbers | None,
) -> Axis:
    if model.payload.state is not manifests.ModelState.ENABLED:
        return Axis("Not serving", "–", "idle", f"the model is {model.payload.state}")
    if circuit is circuits.State.OPEN:
        return Axis("Down", "✕", "bad", "its circuit is open after failures")
    if circuit is circuits.State.HALF_OPEN:
        return Axis("Degraded", "!", "warn", "its circuit is half open: trying it again")
    rate = numbers.success_rate if numbers else None
    if (
        rate is not None
        and numbers is not None
        and numbers.requests >= MIN_CALLS_FOR_RATE
        and rate < DEGRADED_BELOW
    ):
        return Axis(
            "Degraded", "!", "warn", f"{rate:.1%} of {numbers.requests} calls succeeded in 24 h"
        )
    return Axis("Healthy", "✓", "ok", "circuit closed")


def circuit_states(
    states: Mapping[circuits.ModelVersion, circuits.State],
    versions: Mapping[str, circuits.ModelVersion],
) -> dict[str, circuits.State]:
    """The circuit of the version each model serves now."""
    return {ident: states[v] for ident, v in versions.items() if v in states}


def sunset(model: manifests.AIModel, today: dt.date) -> tuple[int, str] | None:
    """(days left, words) when the model has a sunset date: "retires in 23 days"."""
    life = model.payload.lifecycle
    if life is None or life.sunset_date is None:
        return None
    days = (life.sunset_date - today).days
    if days < 0:
        return days, f"past its sunset ({life.sunset_date.isoformat()})"
    if days == 0:
        return days, "sunset today"
    return days, f"retires in {days} day{'s' if days != 1 else ''}"


class ItemCache:
    """Each model's rendered card (or table row), kept while what it shows is unchanged:
    the model object of the snapshot (a new snapshot makes new ones), its two axes, its
    numbers and its sunset words. A fleet page of 1,000 models then costs the cards that
    changed, not 1,000 renders (about 60 ms on 2 cores). Cards hold nothing that depends
    on who looks (no buttons, no CSRF token)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: dict[tuple[str, str], tuple[tuple[object, ...], Markup]] = {}

    def get(
        self, model_id: str, view: str, key: tuple[object, ...], render: Callable[[], Markup]
    ) -> Markup:
        found = self._items.get((model_id, view))
        if found is not None and found[0] == key:
            return found[1]
        if len(self._items) >= self.size:
            self._items.clear()
        drawn = render()
        self._items[(model_id, view)] = (key, drawn)
        return drawn


def sparkline(model_id: str, numbers: Numbers) -> Markup:
    return charts.sparkline(
        id_prefix=charts.chart_id(f"spark-{model_id}"),
        title="Mean latency per hour, last 24 h",
        times=list(numbers.times),
        values=list(numbers.mean_latency),
        unit="ms",
        table=False,
    )
