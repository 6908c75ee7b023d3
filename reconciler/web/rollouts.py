"""What the status page and the model page say of rollouts (DESIGN.md section 11).

A rollout (`store.rollouts.Rollout`) becomes a :class:`View` of plain words: its
phase and its rollback in word, icon and tone (never colour alone), where it stands
("step 1 of 2 at 10 % of the calls"), its steps as a progress list, its figures
against the SLO with their n, and, when the rollback could not be pushed, the commit
to make by hand. Kept apart from the pages so both show one rollout the same way.

The live stream asks :class:`Stamps` whether any open rollout moved: a judgement
changes no routing (the snapshot's ``rollout_serial`` stays), but its figures are on
the pages. One read of the open rollouts per :data:`STAMPS_FRESH_S` per process,
however many pages are open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.store.rollouts import Mode, Phase, RollbackState, Rollout
from reconciler.web.fleet import Axis

FINISHED_SHOWN = 20  # finished rollouts the status page lists (every open one is listed)
JUDGEMENTS_SHOWN = 50
STAMPS_FRESH_S = 5.0
RECENT = dt.timedelta(days=1)  # an ended rollout the model page still shows first

PHASES = {
    Phase.RUNNING: Axis(
        "Running", "↻", "warn", "under analysis: the figures are judged as calls come"
    ),
    Phase.SUCCESSFUL: Axis("Successful", "✓", "ok", "the canary met its SLO and was promoted"),
    Phase.FAILED: Axis("Failed", "✕", "bad", "the canary broke its SLO"),
    Phase.INCONCLUSIVE: Axis(
        "Inconclusive", "?", "warn", "too few calls to judge by the end of the step"
    ),
    Phase.ABORTED: Axis("Aborted", "■", "bad", "stopped by hand, or its model was removed"),
    Phase.SUPERSEDED: Axis("Superseded", "⤳", "idle", "a newer version replaced it"),
}
ROLLBACKS = {
    RollbackState.ROLLING_BACK: Axis(
        "RollingBack", "↺", "warn", "the canary gets no calls; the rollback commit is being made"
    ),
    RollbackState.PENDING: Axis(
        "RollbackPending", "!", "bad", "the rollback could not be pushed: make the commit by hand"
    ),
    RollbackState.COMMITTED: Axis(
        "Committed", "↺", "warn", "the rollback is committed; the reconcile applies it"
    ),
    RollbackState.ROLLED_BACK: Axis("RolledBack", "✓", "ok", "the stable version is live again"),
}


def duration(seconds: float | int | None) -> str:
    """``90`` -> "1 min 30 s", ``3600`` -> "1 h"."""
    if seconds is None:
        return "–"
    left = max(0, round(float(seconds)))
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2]) or "0 s"


def percent(rate: float | None) -> str:
    if rate is None:
        return "–"
    text = f"{100 * rate:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


def millis(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One figure against its SLO: ``met`` is None when it is not judged (too few calls,
    or no SLO for it)."""

    value: str
    target: str
    met: bool | None

    @property
    def tone(self) -> str:
        return "idle" if self.met is None else "ok" if self.met else "bad"

    @property
    def icon(self) -> str:
        return "–" if self.met is None else "✓" if self.met else "✕"

    @property
    def word(self) -> str:
        return (
            "not judged" if self.met is None else "meets the SLO" if self.met else "breaks the SLO"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Figures:
    """One judgement (or the figures so far) of the version under test."""

    at: str | None
    since: str | None
    window_s: float | None
    step: int  # from 1
    weight: int
    verdict: Axis
    samples: int
    min_samples: int | None
    rate: Check
    p95: Check
    n: Check
    reasons: tuple[str, ...]


def figures_of(raw: Mapping[str, Any]) -> Figures:
    slo = raw.get("slo") or {}
    samples = int(raw.get("samples") or 0)
    need = slo.get("minSamples")
    enough = need is None or samples >= int(need)
    rate, min_rate = raw.get("successRate"), slo.get("minSuccessRate")
    p95, max_p95 = raw.get("p95LatencyMs"), slo.get("maxP95LatencyMs")
    try:
        verdict = PHASES[Phase(str(raw.get("verdict")))]
    except ValueError:
        verdict = Axis(str(raw.get("verdict") or "–"), "?", "idle", "")
    return Figures(
        at=raw.get("at"),
        since=raw.get("since"),
        window_s=raw.get("windowS"),
        step=int(raw.get("step") or 0) + 1,
        weight=int(raw.get("weight") or 0),
        verdict=verdict,
        samples=samples,
        min_samples=None if need is None else int(need),
        rate=Check(
            percent(rate),
            "no SLO" if min_rate is None else f"≥ {percent(float(min_rate))}",
            None
            if rate is None or min_rate is None or not enough
            else float(rate) >= float(min_rate),
        ),
        p95=Check(
            millis(p95),
            "no SLO" if max_p95 is None else f"≤ {millis(float(max_p95))}",
            None if p95 is None or max_p95 is None or not enough else float(p95) <= float(max_p95),
        ),
        n=Check(f"{samples:,}", "no minimum" if need is None else f"≥ {int(need):,}", enough),
        reasons=tuple(str(r) for r in raw.get("reasons") or ()),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One step of the progress list: ``state`` is done, current, next, skipped (promoted
    before it), stopped (the rollout stopped there) or unreached (it stopped before)."""

    label: str
    weight: int
    pause: str
    state: str

    @property
    def icon(self) -> str:
        return STEP_WORDS[self.state][0]

    @property
    def word(self) -> str:
        return STEP_WORDS[self.state][1]


STEP_WORDS = {
    "done": ("✓", "passed"),
    "current": ("▶", "now"),
    "next": ("○", "to come"),
    "skipped": ("»", "skipped: promoted before it"),
    "stopped": ("■", "stopped here"),
    "unreached": ("○", "not reached"),
}


def _moving(rollout: Rollout) -> bool:
    """Open and not rolling back: the canary gets its step's share."""
    return rollout.open and rollout.rollback is RollbackState.NONE


def steps_of(rollout: Rollout) -> tuple[Step, ...]:
    """The steps, then the promotion to all calls; a verification is one step."""
    success = rollout.phase is Phase.SUCCESSFUL
    if rollout.mode is Mode.VERIFY or not rollout.steps:
        window = duration(rollout.slo.get("windowS", 600))
        state = "current" if _moving(rollout) else "done" if success else "stopped"
        return (Step("Verify", 100, window, state),)
    out = []
    for index, step in enumerate(rollout.steps):
        if index < rollout.step:
            state = "done"
        elif index == rollout.step:
            state = "current" if _moving(rollout) else "done" if success else "stopped"
        elif _moving(rollout):
            state = "next"
        else:
            state = "skipped" if success else "unreached"
        out.append(
            Step(f"Step {index + 1}", int(step["weight"]), duration(step.get("pauseS")), state)
        )
    final = "done" if success else "next" if _moving(rollout) else "unreached"
    out.append(Step("Promote", 100, "", final))
    return tuple(out)


@dataclasses.dataclass(frozen=True, slots=True)
class Pending:
    """A rollback to make by hand: why it could not be pushed, and what to commit."""

    reason: str
    command: str
    revert: str
    message: str
    diff: str


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    rollout: Rollout
    phase: Axis
    rollback: Axis | None
    where: str
    lead: str
    steps: tuple[Step, ...]
    latest: Figures | None
    judgements: tuple[Figures, ...]  # newest first
    pending: Pending | None
    evidence: str
    step_ends: dt.datetime | None  # when the current step's pause is over (open ones)

    @property
    def model_id(self) -> str:
        return self.rollout.model_id

    @property
    def actionable(self) -> bool:
        """Whether promote and abort can act on it (the server checks again)."""
        return _moving(self.rollout)

    def recent(self, now: dt.datetime) -> bool:
        """Open, or ended within :data:`RECENT`: the model page shows it first."""
        ended = self.rollout.finished_at
        return ended is None or now - ended < RECENT

    @property
    def heading(self) -> str:
        if self.actionable:
            return "in progress"
        return "rolling back" if self.rollout.open else "ended"

    @property
    def slo_text(self) -> str:
        return slo_text(self.rollout.slo)


def slo_text(slo: Mapping[str, Any]) -> str:
    """The SLO in words, with the analyst's defaults where it is silent."""
    parts = [f"success rate ≥ {percent(float(slo.get('minSuccessRate', 0.99)))}"]
    if slo.get("maxP95LatencyMs") is not None:
        parts.append(f"p95 latency ≤ {millis(float(slo['maxP95LatencyMs']))}")
    parts.append(
        f"judged on at least {int(slo.get('minSamples', 50)):,} calls within "
        f"{duration(int(slo.get('windowS', 600)))}"
    )
    return ", ".join(parts)


def where_of(rollout: Rollout) -> str:
    """Where the rollout stands, in a few words."""
    stable = rollout.stable_version
    if rollout.mode is Mode.VERIFY or not rollout.steps:
        if _moving(rollout):
            return "verifying, with all calls"
        if rollout.phase is Phase.SUCCESSFUL:
            return "verified: it keeps all calls"
        if rollout.open:
            return f"stopped: the calls go to version {stable}"
        return "ended"
    count = len(rollout.steps)
    at = f"step {rollout.step + 1} of {count}"
    if rollout.phase is Phase.SUCCESSFUL:
        return f"promoted at {at}: it gets all calls"
    if _moving(rollout):
        return f"{at}, {rollout.weight} % of the calls"
    weight = int(rollout.steps[min(rollout.step, count - 1)]["weight"])
    if rollout.open:
        return f"stopped at {at} ({weight} %): the canary gets no calls"
    return f"ended at {at} ({weight} %)"


def lead_of(rollout: Rollout) -> str:
    """What kind of rollout it is, in a sentence."""
    canary, stable = rollout.canary_version, rollout.stable_version
    if rollout.mode is Mode.VERIFY or not rollout.steps:
        return (
            f"Version {canary} (after {stable}) is verified with all calls over its first "
            f"{duration(int(rollout.slo.get('windowS', 600)))}."
        )
    return (
        f"Version {canary} is the canary beside the stable version {stable}: it gets each "
        "step's share of the calls, judged against the SLO before the next."
    )


def view_of(rollout: Rollout) -> View:
    analysis = rollout.analysis
    current = analysis.get("current")
    judged = rollout.judgements[-JUDGEMENTS_SHOWN:]
    latest = current if isinstance(current, dict) else (judged[-1] if judged else None)
    raw = analysis.get("pending")
    pending = (
        Pending(
            str(raw.get("reason") or ""),
            str(raw.get("command") or ""),
            str(raw.get("revert") or ""),
            str(raw.get("message") or ""),
            str(raw.get("diff") or ""),
        )
        if isinstance(raw, dict) and rollout.rollback is RollbackState.PENDING
        else None
    )
    shown = None if latest is None else figures_of(latest)
    if shown is not None and shown.verdict.word == "Running" and not _moving(rollout):
        # figures measured when it stopped (an abort's): the verdict is how it ended
        shown = dataclasses.replace(shown, verdict=PHASES[rollout.phase])
    ends = None
    if _moving(rollout):
        ends = rollout.step_started_at + dt.timedelta(seconds=rollout.pause_s())
    return View(
        rollout=rollout,
        phase=PHASES[rollout.phase],
        rollback=ROLLBACKS.get(rollout.rollback),
        where=where_of(rollout),
        lead=lead_of(rollout),
        steps=steps_of(rollout),
        latest=shown,
        judgements=tuple(figures_of(j) for j in reversed(judged)),
        pending=pending,
        evidence=str(analysis.get("evidence") or ""),
        step_ends=ends,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """The status page's rollouts: every open one, then the latest finished ones."""

    shown: tuple[View, ...]
    hidden: int  # finished ones not shown


def listing_of(found: Sequence[Rollout], finished_shown: int = FINISHED_SHOWN) -> Listing:
    open_ones = [r for r in found if r.open]
    finished = [r for r in found if not r.open]
    kept = open_ones + finished[:finished_shown]
    return Listing(tuple(view_of(r) for r in kept), len(finished) - len(finished[:finished_shown]))


class Stamps:
    """What the open rollouts of each database are now, as a value that changes when any
    of them moves (a judgement, a step, a verdict, its end), read at most every
    ``fresh_s`` however many pages ask."""

    def __init__(self, fresh_s: float = STAMPS_FRESH_S) -> None:
        self.fresh_s = fresh_s
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, tuple[tuple[int, int], ...]]] = {}

    def get(self, where: str, read: Callable[[], Sequence[Rollout]]) -> tuple[tuple[int, int], ...]:
        with self._lock:
            found = self._last.get(where)
        if found is not None and time.monotonic() - found[0] < self.fresh_s:
            return found[1]
        stamp = tuple((r.id, r.generation) for r in read())
        with self._lock:
            self._last[where] = (time.monotonic(), stamp)
        return stamp

    def last(self, where: str) -> tuple[tuple[int, int], ...] | None:
        with self._lock:
            found = self._last.get(where)
        return None if found is None else found[1]


STAMPS = Stamps()
