"""Circuit breakers per model version: a dead one costs zero attempts while its circuit is open.

Pure state machine with an injectable clock, and no I/O; the router
(:mod:`reconciler.routing.engine`) feeds it the outcome of every call.

A circuit belongs to a :class:`ModelVersion` (model id, version), not to a
model id (DESIGN section 7): when the registry applies another version of a
model (a new one, or an older one again after a revert), that version starts
with a closed circuit, so a rollback is not blocked by the failures of the
version it rolled back from. :meth:`Breakers.retain` drops the circuits of
versions no live snapshot holds any more, and later outcomes of those versions
(calls still in flight across the swap) are ignored: the state stays bounded by
the live fleet, however many times a model is versioned.

    closed --(N consecutive failures, or a 429)--> open --(cooldown over)--> half-open
    half-open --(the single probe succeeds)--> closed
    half-open --(the probe fails)--> open again

A 429 always trips the circuit, and so does a 503 that carries Retry-After; the
Retry-After, when given, sets how long it stays open, otherwise the rule's
``failover.cooldownS`` does. While half-open exactly one
call is let through as a probe; the others skip the model.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import NamedTuple


class ModelVersion(NamedTuple):
    """What circuits and observed latencies are kept for: one version of one model.
    A tuple, so hashing it is done in C; the router builds one per model and snapshot."""

    model_id: str
    version: str

    def label(self) -> str:
        """``claude-sonnet (version 2)``: how health and reasons name it."""
        return f"{self.model_id} (version {self.version})"


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass(slots=True)
class Circuit:
    state: State = State.CLOSED
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    why: str = ""


class Breakers:
    def __init__(
        self, *, failure_threshold: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.clock = clock
        self._circuits: dict[ModelVersion, Circuit] = {}
        self._lock = threading.Lock()
        self._live: frozenset[ModelVersion] | None = None  # None: every version counts
        # read without the lock by decisions
        self._not_closed: frozenset[ModelVersion] = frozenset()

    def count(self) -> int:
        """How many circuits are kept (closed ones without failures are not)."""
        return len(self._circuits)

    def open_ids(self) -> frozenset[ModelVersion]:
        """Versions whose circuit is not closed: the only ones a decision must ask about."""
        return self._not_closed

    def _track(self) -> None:
        self._not_closed = frozenset(
            m for m, c in self._circuits.items() if c.state is not State.CLOSED
        )

    def retain(self, live: Collection[ModelVersion]) -> list[ModelVersion]:
        """Keep the circuits of ``live`` versions only (the router calls this when it
        swaps snapshots), and ignore outcomes of any other version from now on. Returns
        the dropped versions whose circuit was not closed (their gauge goes back to 0)."""
        with self._lock:
            self._live = frozenset(live)
            gone = [key for key in self._circuits if key not in self._live]
            dropped = [key for key in gone if self._circuits.pop(key).state is not State.CLOSED]
            if gone:
                self._track()
            return dropped

    def open_for(self, key: ModelVersion) -> float | None:
        """Seconds until ``key``'s open circuit lets a probe through, or None when it is
        not open (what a caller told to come back later should wait)."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.state is not State.OPEN:
                return None
            left = circuit.open_until - self.clock()
            return left if left > 0 else None

    def blocked(self, key: ModelVersion) -> str | None:
        """Why ``key`` must be skipped now, or None. Does not take the probe."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.state is State.CLOSED:
                return None
            now = self.clock()
            if circuit.state is State.OPEN and now < circuit.open_until:
                return (
                    f"circuit open for {circuit.open_until - now:.1f}s "
                    f"({circuit.why}, version {key.version})"
                )
            if circuit.state is State.HALF_OPEN and circuit.probing:
                return f"circuit half-open, a probe is in flight (version {key.version})"
            return None

    def acquire(self, key: ModelVersion) -> bool:
        """Take permission to call; in half-open only the first caller gets it (the probe)."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.state is State.CLOSED:
                return True
            if circuit.state is State.OPEN:
                if self.clock() < circuit.open_until:
                    return False
                circuit.state = State.HALF_OPEN
                circuit.probing = False
            if circuit.probing:
                return False
            circuit.probing = True
            return True

    def success(self, key: ModelVersion) -> bool:
        """Close the version's circuit (a closed circuit without failures is no circuit);
        True when it had one, so that its state may have changed."""
        with self._lock:
            if self._circuits.pop(key, None) is None:
                return False
            self._track()
            return True

    def failure(
        self, key: ModelVersion, *, cooldown_s: float, retry_after_s: float | None, why: str
    ) -> bool:
        """Count a failure; False when it was not counted (``key`` is no longer live)."""
        with self._lock:
            if self._live is not None and key not in self._live:
                return False  # a call to a version no longer live ended: nothing to keep
            circuit = self._circuits.setdefault(key, Circuit())
            circuit.failures += 1
            circuit.probing = False
            trips = (
                retry_after_s is not None
                or circuit.state is State.HALF_OPEN
                or circuit.failures >= self.failure_threshold
            )
            if trips:
                circuit.state = State.OPEN
                circuit.open_until = self.clock() + (
                    retry_after_s if retry_after_s is not None else cooldown_s
                )
                circuit.why = why
                self._track()
            return True

    def release(self, key: ModelVersion) -> None:
        """A probe that ended without a verdict (cancelled): let another caller probe."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is not None:
                circuit.probing = False

    def states(self) -> dict[ModelVersion, State]:
        with self._lock:
            now = self.clock()
            return {
                key: (State.HALF_OPEN if c.state is State.OPEN and now >= c.open_until else c.state)
                for key, c in self._circuits.items()
            }
