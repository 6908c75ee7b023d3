"""Observed latency per model version: what the latency strategy ranks by.

Kept by the router (:mod:`reconciler.routing.engine`) from every successful attempt,
seeded from the routing logs at start.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Collection, Mapping

from reconciler.manifests import scoring
from reconciler.routing import circuits

Key = circuits.ModelVersion


class LatencyStats:
    """Observed latency of successful calls per model version, over a sliding window.

    The p95 is recomputed at most every 16 samples or every second, and samples
    older than the window age out, so a model excluded by ``maxLatencyMs`` gets
    another chance once its slow period is over. :meth:`retain` keeps the live
    versions only, as :meth:`circuits.Breakers.retain` does.
    """

    def __init__(
        self,
        *,
        size: int = 1024,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.size = size
        self.window_s = window_s
        self.clock = clock  # injected: tests age samples out with a fake clock
        # when each sample was taken, and its latency: two deques side by side, so the
        # p95 sorts plain floats (in C) instead of unpacking pairs in Python
        self._times: dict[Key, collections.deque[float]] = {}
        self._values: dict[Key, collections.deque[float]] = {}
        self._p95: dict[Key, tuple[float, float]] = {}  # version -> (p95, computed at)
        self._fresh: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._live: frozenset[Key] | None = None  # None: every version counts
        self.epoch = 0  # bumped whenever a p95 changes: latency orders are cached per epoch

    def count(self) -> int:
        """How many versions have a latency history."""
        return len(self._times)

    def seed(self, latencies: Mapping[Key, list[float]]) -> None:
        """Start from what the routing logs observed (a restart keeps its p95s)."""
        for key, values in latencies.items():
            for value in reversed(values):  # oldest first
                self.add(key, value)

    def retain(self, live: Collection[Key]) -> None:
        """Keep the history of ``live`` versions only, and ignore samples of others."""
        with self._lock:
            self._live = frozenset(live)
            for key in [k for k in self._times if k not in self._live]:
                del self._times[key], self._values[key]
                self._fresh.pop(key, None)
                if self._p95.pop(key, None) is not None:
                    self.epoch += 1

    def add(self, key: Key, latency_ms: float) -> None:
        now = self.clock()
        with self._lock:
            if self._live is not None and key not in self._live:
                return  # a call to a version no longer live: its history is gone
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = collections.deque(maxlen=self.size)
                self._values[key] = collections.deque(maxlen=self.size)
            times.append(now)
            self._values[key].append(latency_ms)
            fresh = self._fresh[key] = self._fresh.get(key, 0) + 1
            if fresh >= 16 or key not in self._p95:
                self._compute(key, now)

    def _compute(self, key: Key, now: float) -> None:
        times, values = self._times.get(key), self._values.get(key)
        while times and values and now - times[0] > self.window_s:
            times.popleft()
            values.popleft()
        if times is None:  # dropped by retain while a reader waited for the lock
            return
        self._fresh[key] = 0
        if not values:
            if self._p95.pop(key, None) is not None:
                self.epoch += 1
            return
        value = scoring.percentile(sorted(values), 0.95)
        previous = self._p95.get(key)
        self._p95[key] = (value, now)
        if previous is None or previous[0] != value:
            self.epoch += 1

    def p95(self, key: Key) -> float | None:
        found = self._p95.get(key)
        if found is None:
            return None
        now = self.clock()
        if now - found[1] > 1.0:
            with self._lock:
                self._compute(key, now)
            found = self._p95.get(key)
        return found[0] if found else None
