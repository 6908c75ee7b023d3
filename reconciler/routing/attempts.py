"""One attempt of a routed call, as the caller and the routing log see it.

Shared by the plain call (:meth:`RoutingEngine.route_request`) and the streamed one
(:mod:`reconciler.routing.streaming`).
"""

from __future__ import annotations

import dataclasses
import time
from enum import StrEnum
from typing import Any

from reconciler.providers.base import FailureKind, ProviderError
from reconciler.routing import ranking


class AttemptOutcome(StrEnum):
    """An attempt that did not fail; a failed one's outcome is its :class:`FailureKind`."""

    SUCCESS = "success"
    SKIPPED = "skipped"  # its circuit is open: not called


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptReport:
    model_id: str
    outcome: AttemptOutcome | FailureKind
    latency_ms: float
    message: str | None = ""
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Written by hand, not by `base.serial`: every routed call's answer carries its
        # attempts, and a TypeAdapter costs about 3x this (0.6 vs 2.0 us).
        return {
            "modelId": self.model_id,
            "version": self.version,
            "outcome": self.outcome.value,
            "latencyMs": round(self.latency_ms, 1),
            "message": self.message or "",
        }


CIRCUIT_OPEN = ProviderError(FailureKind.SERVER_ERROR, "circuit open: not called")
# A caller that went away mid-stream: the attempt's row, which no analysis counts against
# the model (like a client error), and no circuit either.
CANCELLED = ProviderError(FailureKind.CLIENT_ERROR, "the caller disconnected; upstream closed")
CANCELLED_KIND = "cancelled"


def since(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()``)."""
    return (time.perf_counter() - started) * 1000


def after_failover(
    decision: ranking.RoutingDecision, model_id: str, attempts: list[AttemptReport]
) -> ranking.RoutingDecision:
    """The decision as it turned out: served by ``model_id``, after the failures."""
    failed = [a for a in attempts if isinstance(a.outcome, FailureKind)]
    if not failed:
        return decision
    why = ", ".join(f"{a.model_id}: {a.outcome}" for a in failed)
    return dataclasses.replace(
        decision, model_id=model_id, reason=f"failover from {why}; {decision.reason}"
    )
