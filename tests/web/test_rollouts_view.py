"""What the pages say of a rollout (web/rollouts.py), from plain rollouts: the steps as a
progress list, where it stands, its figures against the SLO with their n, its phase in
word and icon, the listing's order and cap, and the stamps the live stream compares."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from reconciler.store.rollouts import Mode, Phase, RollbackState, Rollout
from reconciler.web import rollouts

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SLO = {"minSuccessRate": 0.98, "maxP95LatencyMs": 8000, "minSamples": 50, "windowS": 600}


def rollout(**values: Any) -> Rollout:
    base: dict[str, Any] = {
        "id": 1,
        "model_id": "alpha",
        "mode": Mode.CANARY,
        "stable_version": "1",
        "canary_version": "2",
        "revision": "a" * 40,
        "steps": [{"weight": 10, "pauseS": 300}, {"weight": 50, "pauseS": 600}],
        "slo": SLO,
        "on_inconclusive": "hold",
        "step": 0,
        "weight": 10,
        "phase": Phase.RUNNING,
        "rollback": RollbackState.NONE,
        "rollback_commit": None,
        "message": "",
        "analysis": {},
        "generation": 1,
        "started_at": T0,
        "step_started_at": T0,
        "updated_at": T0,
        "finished_at": None,
    }
    return Rollout(**{**base, **values})


def figures(
    samples: int, successes: int, p95: float | None, verdict: str = "Running"
) -> dict[str, Any]:
    return {
        "at": "2026-03-01T12:05:00Z",
        "since": "2026-03-01T12:00:00Z",
        "windowS": 300.0,
        "step": 0,
        "weight": 10,
        "verdict": verdict,
        "reasons": [],
        "samples": samples,
        "successes": successes,
        "successRate": successes / samples if samples else None,
        "p95LatencyMs": p95,
        "slo": SLO,
    }


def test_a_running_canary_marks_its_current_step_and_what_comes() -> None:
    view = rollouts.view_of(rollout(step=1, weight=50))
    assert [(s.label, s.weight, s.pause, s.state) for s in view.steps] == [
        ("Step 1", 10, "5 min", "done"),
        ("Step 2", 50, "10 min", "current"),
        ("Promote", 100, "", "next"),
    ]
    assert view.where == "step 2 of 2, 50 % of the calls"
    assert view.phase.word == "Running" and view.phase.icon == "↻"
    assert view.actionable and view.heading == "in progress"
    assert view.step_ends == T0 + dt.timedelta(seconds=600)


def test_a_promoted_canary_skips_nothing_it_passed_and_a_failed_one_stops() -> None:
    promoted = rollouts.view_of(rollout(phase=Phase.SUCCESSFUL, weight=100, finished_at=T0, step=0))
    assert [s.state for s in promoted.steps] == ["done", "skipped", "done"]
    assert promoted.where == "promoted at step 1 of 2: it gets all calls"
    assert not promoted.actionable and promoted.step_ends is None
    failed = rollouts.view_of(
        rollout(phase=Phase.FAILED, weight=0, rollback=RollbackState.PENDING, step=1)
    )
    assert [s.state for s in failed.steps] == ["done", "stopped", "unreached"]
    assert failed.where == "stopped at step 2 of 2 (50 %): the canary gets no calls"
    assert failed.rollback is not None and failed.rollback.word == "RollbackPending"
    assert failed.heading == "rolling back" and not failed.actionable


def test_a_verification_is_one_step_with_all_calls() -> None:
    view = rollouts.view_of(rollout(mode=Mode.VERIFY, steps=[], weight=100))
    assert [(s.label, s.weight, s.pause, s.state) for s in view.steps] == [
        ("Verify", 100, "10 min", "current")
    ]
    assert view.where == "verifying, with all calls"
    assert "verified with all calls over its first 10 min" in view.lead


def test_figures_are_judged_against_the_slo_only_with_enough_calls() -> None:
    few = rollouts.figures_of(figures(12, 10, 9000.0))
    assert (few.rate.value, few.rate.target, few.rate.met) == ("83.33 %", "≥ 98 %", None)
    assert (few.p95.value, few.p95.target, few.p95.met) == ("9,000 ms", "≤ 8,000 ms", None)
    assert (few.n.value, few.n.target, few.n.met) == ("12", "≥ 50", False)
    assert few.rate.word == "not judged" and few.n.icon == "✕"
    enough = rollouts.figures_of(figures(200, 199, 4.25, "Successful"))
    assert (enough.rate.value, enough.rate.met, enough.rate.icon) == ("99.5 %", True, "✓")
    assert (enough.p95.value, enough.p95.met) == ("4.2 ms", True)
    assert enough.verdict.word == "Successful" and enough.step == 1
    broken = rollouts.figures_of(figures(200, 150, 12000.0, "Failed"))
    assert (broken.rate.met, broken.p95.met, broken.rate.tone) == (False, False, "bad")
    assert broken.p95.word == "breaks the SLO"


def test_an_abort_shows_how_it_ended_not_running() -> None:
    view = rollouts.view_of(
        rollout(
            phase=Phase.ABORTED,
            weight=0,
            rollback=RollbackState.COMMITTED,
            rollback_commit="b" * 40,
            analysis={
                "current": {**figures(60, 60, 20.0), "reasons": ["aborted by ops: slow"]},
                "judgements": [figures(55, 55, 10.0, "Successful")],
                "evidence": "Analysis: Aborted",
            },
        )
    )
    assert view.latest is not None and view.latest.verdict.word == "Aborted"
    assert view.latest.reasons == ("aborted by ops: slow",)
    assert [j.verdict.word for j in view.judgements] == ["Successful"]
    assert view.evidence == "Analysis: Aborted" and view.pending is None


def test_the_pending_commit_is_shown_only_while_pending() -> None:
    pending = {"reason": "push refused", "command": "grove rollback alpha --to 1"}
    held = rollouts.view_of(
        rollout(phase=Phase.FAILED, rollback=RollbackState.PENDING, analysis={"pending": pending})
    )
    assert held.pending is not None and held.pending.command == "grove rollback alpha --to 1"
    done = rollouts.view_of(
        rollout(phase=Phase.FAILED, rollback=RollbackState.COMMITTED, analysis={"pending": pending})
    )
    assert done.pending is None


def test_the_listing_keeps_every_open_one_and_caps_the_finished() -> None:
    found = [rollout(id=1, model_id="open")] + [
        rollout(id=10 + n, model_id=f"m{n}", phase=Phase.SUCCESSFUL, finished_at=T0)
        for n in range(5)
    ]
    listing = rollouts.listing_of(found, finished_shown=3)
    assert [v.model_id for v in listing.shown] == ["open", "m0", "m1", "m2"]
    assert listing.hidden == 2


def test_stamps_change_when_an_open_rollout_moves_and_are_read_at_most_so_often() -> None:
    reads: list[int] = []
    current = [rollout()]

    def read() -> list[Rollout]:
        reads.append(1)
        return current

    stamps = rollouts.Stamps(fresh_s=0.0)
    first = stamps.get("db", read)
    current[0] = dataclasses.replace(current[0], generation=2)
    assert stamps.get("db", read) != first and stamps.last("db") == ((1, 2),)
    assert stamps.last("other") is None
    slow = rollouts.Stamps(fresh_s=60.0)
    slow.get("db", read)
    slow.get("db", read)
    assert len(reads) == 3  # the second read within 60 s came from the cache


def test_durations_in_words() -> None:
    assert [rollouts.duration(s) for s in (0, 45, 90, 3600, 5400, 90061, None)] == [
        "0 s",
        "45 s",
        "1 min 30 s",
        "1 h",
        "1 h 30 min",
        "1 d 1 h",
        "–",
    ]
