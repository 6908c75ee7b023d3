"""Bodies of ``/api/rollouts`` and ``/api/quarantine`` (DESIGN section 11), in the style
of `bodies`: strict requests, camelCase on the wire.

The answers are the documents `gitops.delivery` builds, the same ones ``grove rollout
status -o json`` and ``grove quarantine list -o json`` print; fields added to them later
pass through (``extra="allow"``) rather than vanish from the API only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from reconciler.api.bodies import _Body
from reconciler.gitops import delivery

Phase = Literal["Running", "Successful", "Failed", "Inconclusive", "Aborted", "Superseded"]
RollbackState = Literal["RollingBack", "RollbackPending", "Committed", "RolledBack"]


class _Document(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class RolloutStep(_Document):
    weight: int = Field(description="Percent of the model's calls to the canary.")
    pause_s: int = Field(description="Seconds the step lasts before it is judged.")


class Judgement(_Document):
    """One measurement of the version under test over its window, and its verdict."""

    at: str
    since: str
    window_s: float
    step: int
    weight: int
    verdict: str = Field(description="Running, Successful, Failed or Inconclusive.")
    reasons: list[str]
    samples: int = Field(description="The calls judged (n).")
    successes: int
    success_rate: float | None
    p95_latency_ms: float | None
    slo: dict[str, Any]


class Pending(_Document):
    """A rollback that could not be committed or pushed: the commit to make by hand."""

    reason: str
    command: str = Field(description="The command that makes it, e.g. `grove rollback ID --to 1`.")
    revert: str | None = None
    message: str | None = Field(None, description="The commit message it would have.")
    diff: str | None = None


class RolloutOut(_Document):
    """A model's rollout: its versions, the step and weight, the SLO, every judgement (with
    its n), the phase and the state of its rollback."""

    id: str = Field(description="The model's id.")
    rollout_id: int
    mode: Literal["canary", "verify"] = Field(
        description="canary (steps of weights) or verify (every call, judged over windowS)."
    )
    phase: Phase
    rollback: RollbackState | None
    rollback_commit: str | None = Field(description="The rollback's commit, once made.")
    stable_version: str
    canary_version: str
    revision: str = Field(description="The revision whose apply began it.")
    step: int = Field(description="The current step, from 0.")
    steps: list[RolloutStep]
    weight: int = Field(description="Percent of the model's calls to the canary now.")
    slo: dict[str, Any]
    on_inconclusive: Literal["hold", "rollback"]
    message: str
    analysis: Judgement | None = Field(description="The latest verdict.")
    judgements: list[Judgement]
    pending: Pending | None = Field(description="RollbackPending: the commit to make by hand.")
    started_at: str
    step_started_at: str
    updated_at: str
    finished_at: str | None
    open: bool
    current: Judgement | None = Field(
        None, description="The latest measurement, taken at every analysis."
    )


class RolloutDetail(RolloutOut):
    history: list[RolloutOut] = Field(description="The model's earlier rollouts, newest first.")


class AbortBody(_Body):
    reason: str | None = Field(
        None,
        max_length=delivery.MAX_REASON,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="Why: one line, in the rollback commit's message and the event.",
    )


class QuarantinedOut(_Document):
    kind: Literal["AIModel", "RoutingRule"]
    id: str
    version: str
    reason: str = Field(description="Why it was quarantined.")
    since: str | None


class LiftOut(QuarantinedOut):
    lifted: bool
    by: str = Field(description="Who lifted it (the token's name).")
