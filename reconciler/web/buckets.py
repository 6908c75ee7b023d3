"""The numbers behind the model page's charts: percentiles of raw samples and time buckets.

- ``percentiles(samples)``: nearest-rank percentiles of raw samples (``scoring.percentile``, the
  definition the router and the metrics endpoint use), with n; under ``MIN_SAMPLES`` samples a
  percentile is ``None`` and ``insufficient`` is set. Percentiles are never averaged.
- ``time_buckets(samples, window, end=...)``: per bucket of a window (``1h``, ``24h``, ``7d``)
  p50/p95/p99 from that bucket's raw samples, success rate, requests and cost.

Pure functions: the database read that feeds them (``store.routing_logs.attempts``) is the
caller's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from reconciler.manifests.scoring import percentile
from reconciler.web.scales import epoch, utc

MIN_SAMPLES = 100
"""A percentile from fewer raw samples than this is "insufficient data"."""


QUANTILES = (0.5, 0.95, 0.99)


@dataclasses.dataclass(frozen=True, slots=True)
class Percentiles:
    """Percentiles of ``n`` finite samples; each value is None when ``insufficient``."""

    n: int
    values: dict[float, float | None]
    insufficient: bool


def percentiles(
    samples: Iterable[float | None],
    quantiles: Sequence[float] = QUANTILES,
    *,
    min_samples: int = MIN_SAMPLES,
) -> Percentiles:
    """Nearest-rank percentiles (``scoring.percentile``) of the finite samples.

    Missing and non-finite samples are left out of n. Fewer than ``min_samples`` gives None
    for every quantile and ``insufficient=True``.
    """
    finite = sorted(float(s) for s in samples if s is not None and math.isfinite(s))
    n = len(finite)
    if n < min_samples:
        return Percentiles(n, dict.fromkeys(quantiles), insufficient=True)
    return Percentiles(n, {q: percentile(finite, q) for q in quantiles}, insufficient=False)


class Sample(NamedTuple):
    """One raw attempt, as the routing log keeps it (``store.routing_logs.Observation``)."""

    at: dt.datetime
    latency_ms: float | None
    ok: bool
    cost: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A time window cut into ``span / step`` buckets aligned on multiples of ``step``."""

    name: str
    span: dt.timedelta
    step: dt.timedelta

    @property
    def count(self) -> int:
        return int(self.span / self.step)


WINDOWS = {
    w.name: w
    for w in (
        Window("1h", dt.timedelta(hours=1), dt.timedelta(minutes=5)),
        Window("24h", dt.timedelta(hours=24), dt.timedelta(hours=1)),
        Window("7d", dt.timedelta(days=7), dt.timedelta(hours=6)),
    )
}
"""Coarse enough that a bucket often holds the 100 samples a p99 needs: 24 hourly buckets
hold them from 2,400 calls a day (30-minute buckets left a model with 3,000 calls a day
without a latency line), 28 buckets of 6 hours from 2,800 calls a week."""


@dataclasses.dataclass(frozen=True, slots=True)
class Bucket:
    """The samples with ``start <= at < end``."""

    start: dt.datetime
    end: dt.datetime
    requests: int
    ok: int
    cost: float
    latency: Percentiles

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.requests if self.requests else None


def time_buckets(
    samples: Iterable[Sample | tuple[dt.datetime, float | None, bool, float | None]],
    window: Window | str,
    *,
    end: dt.datetime,
    quantiles: Sequence[float] = QUANTILES,
) -> list[Bucket]:
    """``window.count`` buckets, the last one holding ``end``; samples outside are ignored.

    Buckets are half-open, ``[start, start + step)``, on multiples of ``step`` since the epoch
    (UTC), so a page reloaded a minute later shows the same buckets. Each bucket's
    percentiles come from its own raw latencies (every attempt's, failures included: a timeout
    is latency a caller felt); its cost is the sum of the known costs. Naive datetimes are UTC.
    """
    w = WINDOWS[window] if isinstance(window, str) else window
    step = w.step.total_seconds()
    first = (math.floor(epoch(end) / step) - (w.count - 1)) * step
    latencies: list[list[float | None]] = [[] for _ in range(w.count)]
    requests = [0] * w.count
    oks = [0] * w.count
    costs = [0.0] * w.count
    for at, latency_ms, ok, cost in samples:
        index = math.floor((epoch(at) - first) / step)
        if not 0 <= index < w.count:
            continue
        latencies[index].append(latency_ms)
        requests[index] += 1
        oks[index] += bool(ok)
        if cost is not None and math.isfinite(cost):
            costs[index] += cost
    return [
        Bucket(
            start=utc(first + i * step),
            end=utc(first + (i + 1) * step),
            requests=requests[i],
            ok=oks[i],
            cost=costs[i],
            latency=percentiles(latencies[i], quantiles),
        )
        for i in range(w.count)
    ]
