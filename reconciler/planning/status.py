"""Reconciler status: Argo CD's separate axes (sync, health) plus Flux's conditions
and revisions. Data only; the reconciling service fills it in."""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from reconciler.base import serial


class Sync(StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    UNKNOWN = "Unknown"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    UNKNOWN = "Unknown"


CONDITION_TYPES = ("Ready", "Reconciling", "Stalled", "Drifted", "RollbackPending")
# conditions that say something is wrong when they are True (Ready says so when it is not)
TROUBLE_WHEN_TRUE = frozenset({"Stalled", "Drifted", "RollbackPending"})


class ConditionStatus(StrEnum):
    """A condition's ``status``, as Kubernetes writes it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One condition as ``GET /api/status`` and the state row hold it; a stored one
    may lack its reason, message or time (read as "")."""

    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    time: Annotated[str, Field(alias="lastTransitionTime")] = ""

    def __post_init__(self) -> None:
        # the word itself ("True") is accepted as well as the member, and kept as the member
        object.__setattr__(self, "status", ConditionStatus(self.status))

    @property
    def troubled(self) -> bool:
        """Whether this condition says something is wrong: Ready not True, or one of
        :data:`TROUBLE_WHEN_TRUE` True."""
        if self.type == "Ready":
            return self.status is not ConditionStatus.TRUE
        return self.type in TROUBLE_WHEN_TRUE and self.status is ConditionStatus.TRUE

    def to_json(self) -> dict[str, str]:
        return serial.dump(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        return serial.load(cls, data)


def condition(kind: str, status: bool | None, reason: str, message: str = "") -> Condition:
    text = (
        ConditionStatus.UNKNOWN
        if status is None
        else (ConditionStatus.TRUE if status else ConditionStatus.FALSE)
    )
    return Condition(kind, text, reason, message, dt.datetime.now(dt.UTC).isoformat())


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    __pydantic_config__ = serial.CAMEL

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
    # open rollouts (section 11): model, phase, versions, weight, latest figures, and for
    # one whose rollback could not be pushed, the commit to make
    rollouts: tuple[dict[str, Any], ...] = ()

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)
