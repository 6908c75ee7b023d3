"""Circuit breakers per model: a dead model costs zero attempts while its circuit is open.

Pure state machine with an injectable clock; the router feeds it outcomes.

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
from collections.abc import Callable
from enum import StrEnum


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
        self._circuits: dict[str, Circuit] = {}
        self._lock = threading.Lock()
        self._not_closed: frozenset[str] = frozenset()  # read without the lock by decisions

    def open_ids(self) -> frozenset[str]:
        """Models whose circuit is not closed: the only ones a decision must ask about."""
        return self._not_closed

    def _track(self) -> None:
        self._not_closed = frozenset(
            m for m, c in self._circuits.items() if c.state is not State.CLOSED
        )

    def blocked(self, model_id: str) -> str | None:
        """Why ``model_id`` must be skipped now, or None. Does not take the probe."""
        with self._lock:
            circuit = self._circuits.get(model_id)
            if circuit is None or circuit.state is State.CLOSED:
                return None
            now = self.clock()
            if circuit.state is State.OPEN and now < circuit.open_until:
                return f"circuit open for {circuit.open_until - now:.1f}s ({circuit.why})"
            if circuit.state is State.HALF_OPEN and circuit.probing:
                return "circuit half-open, a probe is in flight"
            return None

    def acquire(self, model_id: str) -> bool:
        """Take permission to call; in half-open only the first caller gets it (the probe)."""
        with self._lock:
            circuit = self._circuits.get(model_id)
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

    def success(self, model_id: str) -> bool:
        """Close the model's circuit (a closed circuit without failures is no circuit);
        True when it had one, so that its state may have changed."""
        with self._lock:
            if self._circuits.pop(model_id, None) is None:
                return False
            self._track()
            return True

    def failure(
        self, model_id: str, *, cooldown_s: float, retry_after_s: float | None, why: str
    ) -> None:
        with self._lock:
            circuit = self._circuits.setdefault(model_id, Circuit())
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

    def release(self, model_id: str) -> None:
        """A probe that ended without a verdict (cancelled): let another caller probe."""
        with self._lock:
            circuit = self._circuits.get(model_id)
            if circuit is not None:
                circuit.probing = False

    def states(self) -> dict[str, State]:
        with self._lock:
            now = self.clock()
            return {
                model_id: (
                    State.HALF_OPEN if c.state is State.OPEN and now >= c.open_until else c.state
                )
                for model_id, c in self._circuits.items()
            }
