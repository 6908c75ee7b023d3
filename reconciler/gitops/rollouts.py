"""Analysis of open rollouts, and the rollback commit when a version fails its SLO.

The reconcile loop's leader calls `Analyst.tick` every ``analysis_interval_s``. Each
open rollout's version under test is judged from the routing logs in the shared
database (every replica's calls count): its success rate and p95 latency over the
window, against the model's ``slo``, once it has ``minSamples`` calls.

- A breach with enough calls is **Failed** at once: in one transaction the canary
  gets no more calls (weight 0, the routers reload), the version is quarantined and
  ``rollout_failed`` is recorded with the figures. Then Grove commits the rollback
  through its own clone as ``grove rollback`` does (a ``git revert`` of the commit
  that introduced the version when it touched only this object, else a restoring
  commit naming it), author ``grove-analysis``, the figures in the message, and
  pushes it; the reconcile applies it like any other commit.
- A step whose pause is over with enough calls and no breach is **Successful**: the
  next step's weight, or after the last one, promotion (``rollout_promoted``).
- A step whose pause is over with too few calls is **Inconclusive**: it holds there
  (judged again every interval) or, with ``onInconclusive: rollback``, rolls back.

Once only: every move is a compare-and-set on the rollout's generation
(`store.rollouts.transition`), so of two analysts only one moves a rollout to
rolling back; and a rollback resumed by a new leader finds git already holding
the stable version and commits nothing (`Authoring.rollback` is idempotent).
When the push cannot happen, the rollout says ``RollbackPending`` with the exact
commit to make, and the calls stay on the stable version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.base import errors, logs, telemetry
from reconciler.base.settings import Settings
from reconciler.gitops import reconciling
from reconciler.gitops.authoring import Author, Authoring, RollbackChange, RollbackMethod
from reconciler.manifests import kinds as manifests
from reconciler.manifests.scoring import percentile
from reconciler.sources.git import GitSource
from reconciler.store import failpoints, registry, rollouts, routing_logs
from reconciler.store.engine import Database
from reconciler.store.rollouts import Phase, RollbackState, Rollout

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger("grove.rollouts")

ANALYST = "grove-analysis"
PENDING_RETRY_S = 60.0  # how often a rollback that could not be pushed is tried again


class NotFound(errors.PermanentError):
    """No rollout for that model."""


class NotOpen(errors.PermanentError):
    """The rollout is over (or already rolling back): nothing to promote or abort."""


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """One judgement of a version: what was measured, over which calls, and the verdict."""

    at: dt.datetime
    since: dt.datetime
    calls: int
    successes: int
    p95_ms: float | None
    verdict: Phase
    reasons: tuple[str, ...]

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.calls if self.calls else None

    def to_json(self, rollout: Rollout) -> dict[str, Any]:
        slo = rollout.slo
        rate = self.success_rate
        return {
            "at": _iso(self.at),
            "since": _iso(self.since),
            "windowS": round((self.at - self.since).total_seconds(), 1),
            "step": rollout.step,
            "weight": rollout.weight,
            "verdict": self.verdict.value,
            "reasons": list(self.reasons),
            "samples": self.calls,
            "successes": self.successes,
            "successRate": None if rate is None else round(rate, 4),
            "p95LatencyMs": None if self.p95_ms is None else round(self.p95_ms, 1),
            "slo": {
                "minSuccessRate": slo.get("minSuccessRate"),
                "maxP95LatencyMs": slo.get("maxP95LatencyMs"),
                "minSamples": slo.get("minSamples"),
                "windowS": slo.get("windowS"),
            },
        }


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measure(connection: Connection, rollout: Rollout, now: dt.datetime) -> Figures:
    """Judge the version under test over its window: the calls since the rollout
    started, at most the SLO's ``windowS`` back."""
    slo = rollout.slo
    window = dt.timedelta(seconds=int(slo.get("windowS", 600)))
    since = max(rollout.started_at, now - window)
    sample = routing_logs.version_sample(
        connection, rollout.model_id, rollout.canary_version, since
    )
    latencies = sorted(sample.latencies_ms)
    p95 = percentile(latencies, 0.95) if latencies else None
    return judge(rollout, now, since, sample.calls, sample.successes, p95)


def judge(
    rollout: Rollout,
    now: dt.datetime,
    since: dt.datetime,
    calls: int,
    successes: int,
    p95_ms: float | None,
) -> Figures:
    """The verdict on these figures: Failed as soon as enough calls breach the SLO;
    Successful when the step's pause is over and they do not; Inconclusive when it is
    over with too few calls; Running until then."""
    slo = rollout.slo
    need = int(slo.get("minSamples", 50))
    min_rate = float(slo.get("minSuccessRate", 0.99))
    max_p95 = float(slo.get("maxP95LatencyMs", math.inf))
    reasons: list[str] = []
    if calls >= need:
        rate = successes / calls
        if rate < min_rate:
            reasons.append(f"success rate {rate:.3f} < {min_rate:g} over {calls} calls")
        if p95_ms is not None and p95_ms > max_p95:
            reasons.append(f"p95 latency {p95_ms:.0f} ms > {max_p95:.0f} ms")
        if reasons:
            return Figures(now, since, calls, successes, p95_ms, Phase.FAILED, tuple(reasons))
    over = (now - rollout.step_started_at).total_seconds() >= rollout.pause_s()
    if not over:
        return Figures(now, since, calls, successes, p95_ms, Phase.RUNNING, ())
    if calls < need:
        why = f"{calls} calls of the {need} the SLO needs by the end of the step"
        return Figures(now, since, calls, successes, p95_ms, Phase.INCONCLUSIVE, (why,))
    return Figures(now, since, calls, successes, p95_ms, Phase.SUCCESSFUL, ())


def evidence(rollout: Rollout, figures: dict[str, Any], verdict: str) -> str:
    """The figures of a verdict as a commit message says them, then the trailers."""
    slo = figures["slo"]
    rate = figures["successRate"]
    p95 = figures["p95LatencyMs"]
    where = (
        f"step {rollout.step + 1} of {len(rollout.steps)} at {rollout.weight}% of the calls"
        if rollout.steps
        else "post-deploy verification, all calls"
    )
    lines = [
        f"Analysis: {verdict} (rollout {rollout.id} of {rollout.model_id}, version "
        f"{rollout.canary_version}, {where})",
        *(f"  {reason}" for reason in figures["reasons"]),
        f"  success rate: {'n/a' if rate is None else f'{rate:.4f}'} "
        f"({figures['successes']} of {figures['samples']} calls); "
        f"SLO minSuccessRate {slo['minSuccessRate']}",
        f"  p95 latency: {'n/a' if p95 is None else f'{p95:.0f} ms'}; "
        f"SLO maxP95LatencyMs {slo['maxP95LatencyMs']}",
        f"  samples: {figures['samples']}; SLO minSamples {slo['minSamples']}",
        f"  window: {figures['since']} .. {figures['at']} ({figures['windowS']:g} s; "
        f"SLO windowS {slo['windowS']})",
        "",
        f"Reverts-Model: {rollout.model_id}@{rollout.canary_version}",
        f"Restores-Model: {rollout.model_id}@{rollout.stable_version}",
    ]
    return "\n".join(lines)


class Analyst:
    """Judges open rollouts and rolls back failed ones; run by the loop's leader."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        holder: str,
        on_routing: Callable[[], object] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.holder = holder
        self.on_routing = on_routing  # the router of this process, told at once
        self._authoring: Authoring | None = None
        self._pending_tried: dict[int, float] = {}

    def authoring(self) -> Authoring:
        if self._authoring is None:
            self._authoring = Authoring(self.settings, self.db)
        return self._authoring

    # ---------------------------------------------------------------- the tick

    def tick(self, now: dt.datetime | None = None) -> None:
        """Judge every open rollout once; resume the rollbacks left half done."""
        with self.db.transaction() as connection:
            open_ones = rollouts.open_rollouts(connection)
        for rollout in open_ones:
            try:
                self._one(rollout, now or dt.datetime.now(dt.UTC))
            except errors.GroveError as exc:
                logs.event(
                    log,
                    "analysis-failed",
                    level=logging.WARNING,
                    id=rollout.model_id,
                    rollout=rollout.id,
                    reason=str(exc)[:300],
                )
            except Exception as exc:  # a bug with one rollout: the others are still judged
                log.error(
                    "analysis-failed",
                    exc_info=exc,
                    extra={"fields": {"id": rollout.model_id, "rollout": rollout.id}},
                )
        self.gauges()

    def _one(self, rollout: Rollout, now: dt.datetime) -> None:
        if rollout.rollback is RollbackState.ROLLING_BACK:
            self.roll_back(rollout, author=ANALYST)
            return
        if rollout.rollback is RollbackState.PENDING:
            last = self._pending_tried.get(rollout.id, 0.0)
            if now.timestamp() - last >= PENDING_RETRY_S:
                self._pending_tried[rollout.id] = now.timestamp()
                self.roll_back(rollout, author=ANALYST)
            return
        if rollout.phase not in rollouts.OPEN_PHASES or rollout.rollback is not RollbackState.NONE:
            return
        with self.db.transaction(write=True) as connection:
            figures = measure(connection, rollout, now)
            judged = figures.to_json(rollout)
            verdict = figures.verdict
            if verdict is Phase.RUNNING:
                if _same_figures(rollout.analysis.get("current"), judged):
                    return  # no new call since the last look: nothing to write
                analysis = {**rollout.analysis, "current": judged}
                rollouts.transition(connection, rollout, routing=False, analysis=analysis, now=now)
                return
            if verdict is Phase.INCONCLUSIVE and rollout.on_inconclusive == "hold":
                self._hold(connection, rollout, judged, now)
                return
            if verdict is Phase.SUCCESSFUL:
                self._advance(connection, rollout, judged, now)
            else:
                moved = self._fail(connection, rollout, judged, verdict, now)
        if verdict is Phase.SUCCESSFUL:
            self._routing_changed()
            return
        if moved is not None:
            self._routing_changed()
            failpoints.hit("rollback_verdict")  # fault tests: die between verdict and commit
            self.roll_back(moved, author=ANALYST)

    def _routing_changed(self) -> None:
        """Tell this process's router now (the others reload on the notification)."""
        if self.on_routing is None:
            return
        try:
            self.on_routing()
        except Exception as exc:  # the router follows at its next wake-up anyway
            logs.event(log, "router-not-told", level=logging.WARNING, reason=str(exc)[:200])

    def _hold(
        self, connection: Connection, rollout: Rollout, judged: dict[str, Any], now: dt.datetime
    ) -> None:
        analysis = {**rollout.analysis, "current": judged}
        if rollout.phase is Phase.INCONCLUSIVE:  # held already: the figures only
            rollouts.transition(connection, rollout, routing=False, analysis=analysis, now=now)
            return
        analysis["judgements"] = _kept([*rollout.judgements, judged])
        verifying = rollout.mode is rollouts.Mode.VERIFY  # all calls already: nothing to hold
        held = rollouts.transition(
            connection,
            rollout,
            routing=False,
            phase=Phase.INCONCLUSIVE.value,
            analysis=analysis,
            message=(
                "verification ended without enough calls: "
                if verifying
                else f"holding at {rollout.weight}%: "
            )
            + "; ".join(judged["reasons"]),
            finished_at=now if verifying else None,
            now=now,
        )
        if held is not None:
            rollouts.record_event(
                connection, "rollout_inconclusive", held, actor=ANALYST, details=judged
            )
            logs.event(log, "rollout-inconclusive", id=rollout.model_id, calls=judged["samples"])

    def _advance(
        self, connection: Connection, rollout: Rollout, judged: dict[str, Any], now: dt.datetime
    ) -> None:
        analysis = {
            **rollout.analysis,
            "current": judged,
            "judgements": _kept([*rollout.judgements, judged]),
        }
        following = rollout.step + 1
        if following < len(rollout.steps):
            weight = int(rollout.steps[following]["weight"])
            moved = rollouts.transition(
                connection,
                rollout,
                routing=True,
                phase=Phase.RUNNING.value,
                step=following,
                weight=weight,
                step_started_at=now,
                analysis=analysis,
                message=f"step {following + 1} of {len(rollout.steps)}: {weight}%",
                now=now,
            )
            if moved is not None:
                rollouts.record_event(
                    connection,
                    "rollout_step",
                    moved,
                    actor=ANALYST,
                    details={**judged, "nextWeight": weight},
                )
                logs.event(log, "rollout-step", id=rollout.model_id, weight=weight)
            return
        promote(connection, rollout, actor=ANALYST, analysis=analysis, judged=judged, now=now)

    def _fail(
        self,
        connection: Connection,
        rollout: Rollout,
        judged: dict[str, Any],
        verdict: Phase,
        now: dt.datetime,
    ) -> Rollout | None:
        """Failed (or Inconclusive, rolling back): see `stop`."""
        moved = stop(
            connection,
            rollout,
            judged,
            phase=verdict,
            reason="; ".join(judged["reasons"]),
            actor=ANALYST,
            event="rollout_failed",
            now=now,
        )
        if moved is not None:
            logs.event(
                log,
                "rollout-failed",
                level=logging.WARNING,
                id=rollout.model_id,
                version=rollout.canary_version,
                reason=moved.message,
            )
        return moved

    # ---------------------------------------------------------------- rolling back

    def roll_back(self, rollout: Rollout, *, author: str) -> None:
        """Commit, push and apply the rollback of ``rollout`` (it is rolling back or
        pending); RollbackPending with the commit to make when it cannot be pushed.
        Also what an abort by hand does, authored by whoever aborted."""
        message = str(rollout.analysis.get("evidence") or "")
        if not isinstance(reconciling.open_source(self.settings), GitSource):
            self._pending(
                rollout,
                f"the fleet source {self.settings.repo} is a folder, not a git repository: "
                "Grove has nothing to commit the rollback to",
                author=author,
            )
            return
        try:
            authoring = self.authoring()
            done = authoring.rollback(
                rollout.model_id,
                Author.of(author),
                to_version=rollout.stable_version,
                evidence=message or None,
            )
        except errors.GroveError as exc:
            self._pending(rollout, str(exc), author=author)
            return
        if done.change not in (
            RollbackChange.ROLLED_BACK,
            RollbackChange.COMMITTED,
            RollbackChange.NOTHING,
            RollbackChange.PENDING,
        ):
            self._pending(rollout, done.detail or str(done.change), author=author)
            return
        commit = done.revision or done.reverted_in
        failpoints.hit("rollback_pushed")  # fault tests: die between push and bookkeeping
        with self.db.transaction(write=True) as connection:
            current = rollouts.latest(connection, rollout.model_id)
            if current is None or current.id != rollout.id:
                return
            values: dict[str, Any] = {"rollback_commit": commit}
            if current.rollback in (RollbackState.ROLLING_BACK, RollbackState.PENDING):
                values["rollback"] = RollbackState.COMMITTED.value
            analysis = {**current.analysis}
            analysis.pop("pending", None)
            rollouts.transition(connection, current, routing=False, analysis=analysis, **values)
            if not rollouts.rolled_back_recorded(connection, rollout):
                registry.record_event(
                    connection,
                    "model_rolled_back",
                    manifests.KIND_MODEL,
                    rollout.model_id,
                    version_from=rollout.canary_version,
                    version_to=rollout.stable_version,
                    revision=commit,
                    actor=author,
                    details={
                        "rolloutId": rollout.id,
                        "undoes": done.undoes,
                        "quarantined": rollout.canary_version,
                    },
                )
        self._pending_tried.pop(rollout.id, None)
        logs.event(
            log,
            "rollout-rolled-back",
            id=rollout.model_id,
            version=rollout.stable_version,
            revision=(commit or "")[:12],
            applied=done.applied,
        )

    def _pending(self, rollout: Rollout, reason: str, *, author: str) -> None:
        """The rollback could not be committed or pushed: say what to commit by hand."""
        commit: dict[str, Any] = {
            "command": f"grove rollback {rollout.model_id} --to {rollout.stable_version}",
            "revert": f"the commit that introduced version {rollout.canary_version} "
            f"(applied in {rollout.revision[:12]})",
        }
        try:
            preview = self.authoring().rollback(
                rollout.model_id,
                Author.of(author),
                to_version=rollout.stable_version,
                evidence=str(rollout.analysis.get("evidence") or "") or None,
                dry_run=True,
            )
            if preview.message:
                commit["message"] = preview.message
            if preview.diff:
                commit["diff"] = preview.diff
            if preview.undoes and preview.method is RollbackMethod.REVERT:
                commit["revert"] = f"git revert {preview.undoes}"
        except (errors.GroveError, OSError):
            pass  # no clone to preview in: the command and the version say it
        with self.db.transaction(write=True) as connection:
            current = rollouts.latest(connection, rollout.model_id)
            if current is None or current.id != rollout.id or not current.open:
                return
            analysis = {**current.analysis, "pending": {"reason": reason[:500], **commit}}
            moved = rollouts.transition(
                connection,
                current,
                routing=False,
                rollback=RollbackState.PENDING.value,
                analysis=analysis,
            )
            if moved is not None and current.rollback is not RollbackState.PENDING:
                rollouts.record_event(
                    connection,
                    "rollback_pending",
                    moved,
                    actor=author,
                    details={"reason": reason[:500], "command": commit["command"]},
                    version_to=rollout.stable_version,
                )
        logs.event(
            log,
            "rollback-pending",
            level=logging.WARNING,
            id=rollout.model_id,
            reason=reason[:300],
        )

    def gauges(self) -> None:
        """The Prometheus series of each model's latest rollout: phase and weight."""
        with self.db.transaction() as connection:
            latest = rollouts.listing(connection)
        for rollout in latest:
            telemetry.rollout_gauges(
                rollout.model_id, rollout.phase.value, rollout.weight, rollout.open
            )


def stop(
    connection: Connection,
    rollout: Rollout,
    judged: dict[str, Any],
    *,
    phase: Phase,
    reason: str,
    actor: str,
    event: str,
    now: dt.datetime,
) -> Rollout | None:
    """A verdict against the canary (Failed, Inconclusive rolling back, Aborted): in the
    caller's transaction it gets no more calls, its version is quarantined and ``event``
    is recorded with the figures; the commit comes after. None when another move came
    first (compare-and-set)."""
    analysis = {
        **rollout.analysis,
        "current": judged,
        "judgements": _kept([*rollout.judgements, judged]),
        "evidence": evidence(rollout, judged, phase.value),
    }
    moved = rollouts.transition(
        connection,
        rollout,
        routing=True,
        phase=phase.value,
        weight=0,
        rollback=RollbackState.ROLLING_BACK.value,
        analysis=analysis,
        message=reason,
        now=now,
    )
    if moved is None:
        return None
    registry.quarantine(
        connection,
        manifests.KIND_MODEL,
        rollout.model_id,
        rollout.canary_version,
        f"rollout {rollout.id} ({phase.value}): {reason}",
    )
    rollouts.record_event(
        connection,
        event,
        moved,
        actor=actor,
        details={**judged, "quarantined": rollout.canary_version},
        version_to=rollout.stable_version,
    )
    return moved


def _same_figures(before: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Whether a running rollout's figures are those it holds already (the same calls,
    the same step): the time of the look alone is not worth a write."""
    if before is None:
        return False
    keys = ("samples", "successes", "p95LatencyMs", "step", "verdict")
    return all(before.get(key) == now.get(key) for key in keys)


def _kept(judgements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return judgements[-rollouts.MAX_JUDGEMENTS :]


# ---------------------------------------------------------------- by hand


def promote(
    connection: Connection,
    rollout: Rollout,
    *,
    actor: str,
    analysis: dict[str, Any] | None = None,
    judged: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Rollout:
    """The canary becomes stable: all calls, the rollout Successful and over."""
    stamp = now or dt.datetime.now(dt.UTC)
    moved = rollouts.transition(
        connection,
        rollout,
        routing=True,
        phase=Phase.SUCCESSFUL.value,
        weight=100,
        finished_at=stamp,
        analysis=analysis or rollout.analysis,
        message=f"promoted by {actor}: version {rollout.canary_version} is stable",
        now=stamp,
    )
    if moved is None:
        raise NotOpen(f"rollout {rollout.id} of {rollout.model_id} moved meanwhile; try again")
    rollouts.record_event(
        connection,
        "rollout_promoted",
        moved,
        actor=actor,
        details=judged or {"by": actor},
        version_from=rollout.stable_version,
        version_to=rollout.canary_version,
    )
    logs.event(log, "rollout-promoted", id=rollout.model_id, version=rollout.canary_version)
    return moved


class Rollouts:
    """What the CLI and the API do with rollouts: read them, promote, abort."""

    def __init__(
        self, settings: Settings, db: Database, *, on_routing: Callable[[], object] | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.on_routing = on_routing  # the caller's router, told when routing changes

    def listing(self) -> list[Rollout]:
        with self.db.transaction() as connection:
            return rollouts.listing(connection)

    def get(self, model_id: str) -> tuple[Rollout, list[Rollout]]:
        """The model's latest rollout and the ones before it."""
        with self.db.transaction() as connection:
            found = rollouts.history(connection, model_id)
        if not found:
            raise NotFound(f"model {model_id} has no rollout")
        return found[0], found[1:]

    def _open(self, connection: Connection, model_id: str) -> Rollout:
        current = rollouts.latest(connection, model_id)
        if current is None:
            raise NotFound(f"model {model_id} has no rollout")
        if not current.open or current.rollback is not RollbackState.NONE:
            state = current.rollback.value or current.phase.value
            raise NotOpen(f"rollout {current.id} of {model_id} is {state}; nothing to do")
        return current

    def promote(self, model_id: str, *, actor: str) -> Rollout:
        with self.db.transaction(write=True) as connection:
            done = promote(connection, self._open(connection, model_id), actor=actor)
        self._told()
        return done

    def _told(self) -> None:
        if self.on_routing is not None:
            self.on_routing()

    def abort(self, model_id: str, *, actor: str, reason: str = "") -> Rollout:
        """Stop the canary now and roll back to stable with a commit, as a failure does,
        authored by ``actor``."""
        why = f"aborted by {actor}" + (f": {reason}" if reason else "")
        with self.db.transaction(write=True) as connection:
            current = self._open(connection, model_id)
            now = dt.datetime.now(dt.UTC)
            figures = measure(connection, current, now).to_json(current)
            figures["reasons"] = [why]
            figures["verdict"] = Phase.ABORTED.value
            moved = stop(
                connection,
                current,
                figures,
                phase=Phase.ABORTED,
                reason=why,
                actor=actor,
                event="rollout_aborted",
                now=now,
            )
            if moved is None:
                raise NotOpen(f"rollout {current.id} of {model_id} moved meanwhile; try again")
        self._told()
        Analyst(self.settings, self.db, holder=actor).roll_back(moved, author=actor)
        with self.db.transaction() as connection:
            latest = rollouts.latest(connection, model_id)
        assert latest is not None
        return latest
