"""Rollouts: the canary or post-deploy verification of each new model version.

A rollout starts inside the apply that makes a model's new version live, when the
model has ``slo`` (`begin`, called by `registry.apply_plan`): with ``rollout`` the
previous version stays *stable* and the new one is the *canary* at the first
step's weight; without it, the new version takes all calls and is verified over
its first ``windowS``. It ends when it is promoted, superseded by another new
version, or the version it held back from is live again (a rollback applied).

Every later move (a judgement, a step, a verdict, a rollback's progress) is a
compare-and-set on ``generation`` (`transition`), so of several replicas only
one ever makes it; a move that changes routing bumps the state row's
``rollout_serial`` and, on PostgreSQL, notifies the routers, which reload.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from reconciler.manifests import kinds as manifests
from reconciler.planning.plans import Change, ChangeKind
from reconciler.store import events, tables

MAX_JUDGEMENTS = 50  # the latest judgements kept on the row; every one is also an event
SAMPLE_LIMIT = 100_000  # rows read for one judgement, newest first


class Phase(StrEnum):
    """As in Argo Rollouts' AnalysisRun, plus how a rollout can end without a verdict."""

    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"


class RollbackState(StrEnum):
    NONE = ""
    ROLLING_BACK = "RollingBack"  # the canary gets nothing; the revert commit is being made
    PENDING = "RollbackPending"  # it could not be pushed: the commit is to make by hand
    COMMITTED = "Committed"  # pushed; the reconcile applies it
    ROLLED_BACK = "RolledBack"  # the stable version is live again


class Mode(StrEnum):
    CANARY = "canary"
    VERIFY = "verify"  # no rollout block: all calls, judged over the first windowS


OPEN_PHASES = (Phase.RUNNING, Phase.INCONCLUSIVE)


@dataclasses.dataclass(frozen=True, slots=True)
class Rollout:
    id: int
    model_id: str
    mode: Mode
    stable_version: str
    canary_version: str
    revision: str
    steps: list[dict[str, int]]
    slo: dict[str, Any]
    on_inconclusive: str
    step: int
    weight: int
    phase: Phase
    rollback: RollbackState
    rollback_commit: str | None
    message: str
    analysis: dict[str, Any]
    generation: int
    started_at: dt.datetime
    step_started_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def open(self) -> bool:
        return self.finished_at is None

    @property
    def judgements(self) -> list[dict[str, Any]]:
        return list(self.analysis.get("judgements", []))

    @property
    def last(self) -> dict[str, Any] | None:
        judged = self.judgements
        return judged[-1] if judged else None

    def pause_s(self) -> int:
        """Seconds the current step lasts (for a verification: the SLO's window)."""
        if not self.steps:
            return int(self.slo.get("windowS", 600))
        return int(self.steps[min(self.step, len(self.steps) - 1)]["pauseS"])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "rolloutId": self.id,
            "mode": self.mode.value,
            "phase": self.phase.value,
            "rollback": self.rollback.value or None,
            "rollbackCommit": self.rollback_commit,
            "stableVersion": self.stable_version,
            "canaryVersion": self.canary_version,
            "revision": self.revision,
            "step": self.step,
            "steps": self.steps,
            "weight": self.weight,
            "slo": self.slo,
            "onInconclusive": self.on_inconclusive,
            "message": self.message,
            "analysis": self.last,
            "judgements": self.judgements,
            "pending": self.analysis.get("pending"),
            "startedAt": _iso(self.started_at),
            "stepStartedAt": _iso(self.step_started_at),
            "updatedAt": _iso(self.updated_at),
            "finishedAt": _iso(self.finished_at),
            "open": self.open,
        }


def summary(rollout: Rollout) -> dict[str, Any]:
    """An open rollout as ``grove status`` shows it: the phase, the versions, the weight,
    the latest figures and, when its rollback could not be pushed, the commit to make."""
    last = rollout.analysis.get("current") or rollout.last or {}
    return {
        "id": rollout.model_id,
        "phase": rollout.phase.value,
        "rollback": rollout.rollback.value or None,
        "stableVersion": rollout.stable_version,
        "canaryVersion": rollout.canary_version,
        "step": rollout.step + 1 if rollout.steps else None,
        "steps": len(rollout.steps) or None,
        "weight": rollout.weight,
        "samples": last.get("samples"),
        "successRate": last.get("successRate"),
        "p95LatencyMs": last.get("p95LatencyMs"),
        "pending": rollout.analysis.get("pending"),
    }


def pending_message(summary_: dict[str, Any]) -> str:
    """What a RollbackPending condition says about one rollout."""
    pending = summary_.get("pending") or {}
    ident, stable = summary_["id"], summary_["stableVersion"]
    command = pending.get("command") or f"grove rollback {ident} --to {stable}"
    revert = str(pending.get("revert") or "")
    how = (
        f"`{revert}`, or `{command}` once it can push"
        if revert.startswith("git revert")
        else f"return {ident} to version {stable} in git (`{command}` once it can push)"
    )
    return (
        f"{ident}: version {summary_['canaryVersion']} failed its analysis and every call "
        f"goes to version {stable}, but the rollback commit could not be made or pushed "
        f"({pending.get('reason', 'unknown reason')}); make it by hand: {how}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """What the router needs of an open rollout: the stable version's content and the
    canary's share (0 once it failed or was aborted: every call to stable)."""

    model_id: str
    stable_version: str
    canary_version: str
    weight: int
    stable_document: dict[str, Any]


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat().replace("+00:00", "Z")


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _of(row: Any) -> Rollout:
    return Rollout(
        id=int(row.id),
        model_id=row.model_id,
        mode=Mode(row.mode),
        stable_version=row.stable_version,
        canary_version=row.canary_version,
        revision=row.revision,
        steps=list(row.steps or []),
        slo=dict(row.slo or {}),
        on_inconclusive=row.on_inconclusive,
        step=int(row.step),
        weight=int(row.weight),
        phase=Phase(row.phase),
        rollback=RollbackState(row.rollback),
        rollback_commit=row.rollback_commit,
        message=row.message,
        analysis=dict(row.analysis or {}),
        generation=int(row.generation),
        started_at=aware(row.started_at),
        step_started_at=aware(row.step_started_at),
        updated_at=aware(row.updated_at),
        finished_at=None if row.finished_at is None else aware(row.finished_at),
    )


# ---------------------------------------------------------------- reading


def latest(connection: Connection, model_id: str) -> Rollout | None:
    table = tables.rollouts
    row = connection.execute(
        select(table).where(table.c.model_id == model_id).order_by(table.c.id.desc()).limit(1)
    ).first()
    return None if row is None else _of(row)


def history(connection: Connection, model_id: str, limit: int = 20) -> list[Rollout]:
    table = tables.rollouts
    rows = connection.execute(
        select(table).where(table.c.model_id == model_id).order_by(table.c.id.desc()).limit(limit)
    )
    return [_of(row) for row in rows]


def listing(connection: Connection, *, open_only: bool = False, limit: int = 500) -> list[Rollout]:
    """The latest rollout of each model, open ones first, then newest first."""
    table = tables.rollouts
    newest = select(func.max(table.c.id).label("id")).group_by(table.c.model_id).subquery("newest")
    query = select(table).join(newest, newest.c.id == table.c.id)
    if open_only:
        query = query.where(table.c.finished_at.is_(None))
    rows = connection.execute(query.order_by(table.c.id.desc()).limit(limit))
    found = [_of(row) for row in rows]
    return sorted(found, key=lambda r: (not r.open, -r.id))


def open_rollouts(connection: Connection) -> list[Rollout]:
    table = tables.rollouts
    rows = connection.execute(
        select(table).where(table.c.finished_at.is_(None)).order_by(table.c.id)
    )
    return [_of(row) for row in rows]


def routes(connection: Connection, live_versions: dict[str, str]) -> dict[str, Route]:
    """The open rollouts that split a model's calls: the canary is the live version and
    gets less than all of them. Read in the snapshot's transaction."""
    table = tables.rollouts
    versions = tables.object_versions
    rows = connection.execute(
        select(
            table.c.model_id,
            table.c.stable_version,
            table.c.canary_version,
            table.c.weight,
            versions.c.meta,
            versions.c.payload,
        )
        .join(
            versions,
            and_(
                versions.c.object_kind == manifests.KIND_MODEL,
                versions.c.object_id == table.c.model_id,
                versions.c.version == table.c.stable_version,
            ),
        )
        .where(and_(table.c.finished_at.is_(None), table.c.weight < 100))
        .order_by(table.c.id)
    )
    found: dict[str, Route] = {}
    for row in rows:
        if live_versions.get(row.model_id) != row.canary_version:
            continue  # the stable version is live again, or the model is gone
        found[row.model_id] = Route(
            row.model_id,
            row.stable_version,
            row.canary_version,
            max(0, int(row.weight)),
            {"meta": row.meta, "payload": row.payload},
        )
    return found


def _held_back_before(connection: Connection, model_id: str, version: str) -> bool:
    """Whether a rollout of ``version`` was stopped before (failed, aborted, rolled back):
    applied again (its quarantine lifted), it is analysed again."""
    table = tables.rollouts
    found = connection.execute(
        select(table.c.id)
        .where(
            and_(
                table.c.model_id == model_id,
                table.c.canary_version == version,
                table.c.rollback != RollbackState.NONE.value,
            )
        )
        .limit(1)
    ).first()
    return found is not None


def _served_before(connection: Connection, model_id: str, version: str) -> bool:
    """Whether ``version`` of the model was applied before the apply in progress (whose
    own event is already written: two applies of it, or more)."""
    table = tables.lifecycle_events
    count = connection.execute(
        select(func.count()).where(
            and_(
                table.c.object_kind == manifests.KIND_MODEL,
                table.c.object_id == model_id,
                table.c.version_to == version,
                table.c.event_type.in_(("model_registered", "model_versioned")),
            )
        )
    ).scalar()
    return int(count or 0) > 1


def rolled_back_recorded(connection: Connection, rollout: Rollout) -> bool:
    """Whether a ``model_rolled_back`` of this rollout's canary is recorded since it began."""
    table = tables.lifecycle_events
    found = connection.execute(
        select(table.c.id)
        .where(
            and_(
                table.c.event_type == "model_rolled_back",
                table.c.object_kind == manifests.KIND_MODEL,
                table.c.object_id == rollout.model_id,
                table.c.version_from == rollout.canary_version,
                table.c.timestamp >= rollout.started_at,
            )
        )
        .limit(1)
    ).first()
    return found is not None


def rollout_serial(connection: Connection) -> int:
    value = connection.execute(
        select(tables.reconciler_state.c.rollout_serial).where(tables.reconciler_state.c.id == 1)
    ).scalar()
    return int(value or 0)


# ---------------------------------------------------------------- writing


def transition(
    connection: Connection,
    rollout: Rollout,
    *,
    routing: bool,
    **values: Any,
) -> Rollout | None:
    """Move ``rollout`` on, if nobody has since (compare-and-set on its generation): the
    row as it is now, or None when another move came first. ``routing``: the move
    changes which version gets calls, so the routers reload."""
    table = tables.rollouts
    stamp = values.pop("now", None) or dt.datetime.now(dt.UTC)
    done = connection.execute(
        update(table)
        .where(and_(table.c.id == rollout.id, table.c.generation == rollout.generation))
        .values(generation=rollout.generation + 1, updated_at=stamp, **values)
    )
    if done.rowcount != 1:
        return None
    if routing:
        bump(connection)
    row = connection.execute(select(table).where(table.c.id == rollout.id)).one()
    return _of(row)


def bump(connection: Connection) -> None:
    state = tables.reconciler_state
    connection.execute(
        update(state).where(state.c.id == 1).values(rollout_serial=state.c.rollout_serial + 1)
    )
    events.notify(connection, "rollout")


def record_event(
    connection: Connection,
    event_type: str,
    rollout: Rollout,
    *,
    actor: str,
    details: dict[str, Any],
    revision: str | None = None,
    version_from: str | None = None,
    version_to: str | None = None,
) -> None:
    """A lifecycle event about ``rollout``: from its stable version to its canary unless
    told (a verdict against the canary says ``version_to`` = stable: from the canary)."""
    events.record(
        connection,
        event_type,
        manifests.KIND_MODEL,
        rollout.model_id,
        version_from=version_from
        or (rollout.canary_version if version_to is not None else rollout.stable_version),
        version_to=version_to or rollout.canary_version,
        revision=revision or rollout.revision,
        actor=actor,
        details={"rolloutId": rollout.id, **details},
    )


def begin(
    connection: Connection,
    changes: Iterable[Change],
    revision: str,
    stamp: dt.datetime,
    *,
    actor: str,
) -> None:
    """Start, supersede or close rollouts for the models an apply changes, in its
    transaction: a new version of a model with ``slo`` starts one; the previous
    version live again closes the open one (a rollback applied)."""
    moved = False
    for change in changes:
        if change.object_kind != manifests.KIND_MODEL:
            continue
        if change.kind is ChangeKind.REMOVE:
            moved |= _close_open(
                connection, change.object_id, stamp, actor, "the model was removed"
            )
        elif change.kind is ChangeKind.VERSION and change.version_to is not None:
            moved |= _on_version(connection, change, revision, stamp, actor)
    if moved:
        bump(connection)


def _finish(
    connection: Connection,
    rollout: Rollout,
    event: str,
    *,
    actor: str,
    stamp: dt.datetime,
    reason: str,
    revision: str | None = None,
    version_to: str | None = None,
    **values: Any,
) -> None:
    """End ``rollout`` inside an apply (its canary gets nothing now) and record ``event``."""
    transition(connection, rollout, routing=False, weight=0, finished_at=stamp, now=stamp, **values)
    record_event(
        connection,
        event,
        rollout,
        actor=actor,
        details={"reason": reason},
        revision=revision,
        version_to=version_to,
    )


def _close_open(
    connection: Connection, model_id: str, stamp: dt.datetime, actor: str, why: str
) -> bool:
    current = latest(connection, model_id)
    if current is None or not current.open:
        return False
    phase = current.phase if current.phase is Phase.FAILED else Phase.ABORTED
    _finish(
        connection,
        current,
        "rollout_aborted",
        actor=actor,
        stamp=stamp,
        reason=why,
        phase=phase,
        message=why,
    )
    return True


def _on_version(
    connection: Connection, change: Change, revision: str, stamp: dt.datetime, actor: str
) -> bool:
    assert change.document is not None and change.version_to is not None
    model_id, version = change.object_id, change.version_to
    payload = change.document.get("payload") or {}
    current = latest(connection, model_id)
    stable = change.version_from
    moved = False
    if current is not None and current.open:
        moved = True
        where: dict[str, Any] = {
            "actor": actor,
            "stamp": stamp,
            "revision": revision,
            "version_to": version,
        }
        if version == current.stable_version:  # a rollback (ours or by hand) is applied
            if current.rollback is not RollbackState.NONE:
                _finish(
                    connection,
                    current,
                    "rollout_rolled_back",
                    **where,
                    reason=f"version {version} is live again (revision {revision[:12]})",
                    rollback=RollbackState.ROLLED_BACK,
                    # the analyst names its own commit once it is pushed; one made by
                    # hand is known by the revision that applied it
                    rollback_commit=current.rollback_commit or revision,
                )
            else:
                why = f"version {version} (stable) is live again"
                _finish(
                    connection,
                    current,
                    "rollout_aborted",
                    **where,
                    reason=why,
                    phase=Phase.ABORTED,
                    message=why,
                )
            return moved
        # a newer version during the analysis restarts it, from the same stable version;
        # one that failed keeps its verdict (a fix forward instead of the rollback)
        stable = current.stable_version
        why = f"superseded by version {version}"
        failed = current.phase is not Phase.RUNNING and current.phase is not Phase.INCONCLUSIVE
        _finish(
            connection,
            current,
            "rollout_superseded",
            **where,
            reason=why,
            phase=current.phase if failed else Phase.SUPERSEDED,
            message=f"{current.message}; {why}" if failed else why,
        )
    slo = payload.get("slo")
    if slo is None or stable is None or stable == version:
        return moved
    no_open = current is None or not current.open
    if (
        no_open
        and _served_before(connection, model_id, version)
        and not _held_back_before(connection, model_id, version)
    ):
        # back to a version that served before and never failed (a rollback, by hand or
        # by Grove): as Argo Rollouts' rollbackWindow, no analysis; the version left may
        # well be quarantined and is no stable version to return to
        return moved
    plan = payload.get("rollout")
    full_slo = manifests.Slo.model_validate(slo).model_dump(by_alias=True)
    if plan is not None:
        spec = manifests.Rollout.model_validate(plan)
        steps = [{"weight": s.weight, "pauseS": s.pause_s} for s in spec.steps]
        mode, weight, on_inconclusive = Mode.CANARY, steps[0]["weight"], spec.on_inconclusive
    else:
        steps, mode, weight, on_inconclusive = [], Mode.VERIFY, 100, "hold"
    result = connection.execute(
        insert(tables.rollouts).values(
            model_id=model_id,
            mode=mode.value,
            stable_version=stable,
            canary_version=version,
            revision=revision,
            steps=steps,
            slo=full_slo,
            on_inconclusive=on_inconclusive,
            step=0,
            weight=weight,
            phase=Phase.RUNNING.value,
            rollback="",
            message="",
            analysis={"judgements": []},
            generation=0,
            started_at=stamp,
            step_started_at=stamp,
            updated_at=stamp,
        )
    )
    created = latest(connection, model_id)
    assert created is not None and result.inserted_primary_key is not None
    assert created.id == result.inserted_primary_key[0]
    record_event(
        connection,
        "rollout_started",
        created,
        actor=actor,
        details={"mode": mode.value, "stable": stable, "weight": weight, "steps": steps},
        revision=revision,
        version_from=stable,
        version_to=version,
    )
    return True
