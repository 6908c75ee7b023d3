"""Reconciler status: Argo CD's separate axes (sync, health) plus Flux's conditions
and revisions. Data only; the reconciling service fills it in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import StrEnum
from typing import Any


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", "Drifted")


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    time: str

    def to_json(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.time,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        return cls(
            type=str(data["type"]),
            status=str(data["status"]),
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            time=str(data.get("lastTransitionTime", "")),
        )


def condition(kind: str, status: bool | None, reason: str, message: str = "") -> Condition:
    text = "Unknown" if status is None else ("True" if status else "False")
    return Condition(kind, text, reason, message, dt.datetime.now(dt.UTC).isoformat())


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    sync: Sync
    health: Health
    conditions: tuple[Condition, ...]
    desired_revision: str | None
    last_applied_revision: str | None
    last_attempted_revision: str | None
    state_serial: int
    objects: int
    pending_changes: int
    drifted: tuple[str, ...]
    suspended: bool = False
    last_error: str | None = None

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "sync": self.sync.value,
            "health": self.health.value,
            "conditions": [c.to_json() for c in self.conditions],
            "desiredRevision": self.desired_revision,
            "lastAppliedRevision": self.last_applied_revision,
            "lastAttemptedRevision": self.last_attempted_revision,
            "stateSerial": self.state_serial,
            "objects": self.objects,
            "pendingChanges": self.pending_changes,
            "drifted": list(self.drifted),
            "suspended": self.suspended,
            "lastError": self.last_error,
        }
