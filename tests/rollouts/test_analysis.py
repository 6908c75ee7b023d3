"""The analyst's verdicts on real routing logs, at chosen times: too little traffic holds
(or rolls back with ``onInconclusive: rollback``), a p95 breach rolls back like a failure
rate does, a version change without ``rollout`` is verified with all calls, and a push the
remote refuses leaves the rollout RollbackPending naming the commit to make, with every
call on the stable version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.base import settings as settings_module
from reconciler.gitops import rollouts as analysis
from reconciler.routing import engine as routing
from reconciler.store import rollouts
from reconciler.store.rollouts import Phase, RollbackState
from tests.rollouts.conftest import Canary, alpha_yaml, later, route

pytestmark = pytest.mark.slow

SLO_20MS = "{minSuccessRate: 0.9, maxP95LatencyMs: 20, minSamples: 20, windowS: 3600}"


def version_2(canary: Canary, **options: str | None) -> None:
    canary.push(
        "alpha: version 2", {"models/alpha.yaml": alpha_yaml("2", canary.canary.url, **options)}
    )
    canary.reconcile()


def refuse_pushes(canary: Canary, said: str = "") -> Path:
    """A pre-receive hook on the fleet repository that refuses every push, saying ``said``."""
    hook = canary.bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho '{said}' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def live_version(canary: Canary) -> str:
    return str(canary.registry.live()["AIModel/alpha"]["version"])


def test_too_little_traffic_is_inconclusive_and_holds(canary: Canary) -> None:
    version_2(canary)
    started = canary.latest()
    analyst = canary.analyst()
    analyst.tick(now=later(started, 61))  # no call at all by the end of the step
    held = canary.latest()
    assert (held.phase, held.weight, held.rollback, held.open) == (
        Phase.INCONCLUSIVE,
        10,
        RollbackState.NONE,
        True,
    )
    assert "0 calls of the 40 the SLO needs" in held.message
    assert canary.log()[0].endswith("|alpha: version 2")  # nothing committed
    analyst.tick(now=later(started, 120))  # still holding: one event, not one a tick
    events = [e for e, ident in canary.registry.events() if ident == "alpha"]
    assert events.count("rollout_inconclusive") == 1

    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        route(engine, 600)  # traffic comes: about 60 canary calls, all good
    finally:
        engine.close()
    analyst.tick(now=later(started, 130))
    resumed = canary.latest()
    assert (resumed.phase, resumed.step, resumed.weight) == (Phase.RUNNING, 1, 50)


def test_inconclusive_rolls_back_when_told_to(canary: Canary) -> None:
    version_2(canary, rollout="{steps: [{weight: 10, pauseS: 60}], onInconclusive: rollback}")
    started = canary.latest()
    canary.analyst().tick(now=later(started, 61))
    done = canary.latest()
    assert (done.phase, done.rollback, done.weight) == (
        Phase.INCONCLUSIVE,
        RollbackState.ROLLED_BACK,
        0,
    )
    author, subject = canary.log()[0].split("|", 1)
    assert (author, subject) == (
        "grove-analysis",
        "grove: rollback AIModel alpha to version 1 (from 2)",
    )
    assert "Analysis: Inconclusive" in canary.message()
    assert live_version(canary) == "1"


def test_a_p95_breach_rolls_back(canary: Canary) -> None:
    canary.canary.delay_s = 0.05  # every answer of version 2 takes 50 ms; the SLO says 20
    version_2(canary, slo=SLO_20MS, rollout="{steps: [{weight: 50, pauseS: 600}]}")
    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        while canary.canary.calls < 20:
            route(engine, 10)
    finally:
        engine.close()
    canary.analyst().tick(now=later(canary.latest(), 5))  # fails before the pause ends
    done = canary.latest()
    assert (done.phase, done.rollback) == (Phase.FAILED, RollbackState.ROLLED_BACK)
    judged = done.judgements[-1]
    assert judged["successRate"] == 1.0 and judged["p95LatencyMs"] >= 50
    assert any(reason.startswith("p95 latency") for reason in judged["reasons"])
    message = canary.message()
    assert "p95 latency" in message and "SLO maxP95LatencyMs 20" in message
    assert live_version(canary) == "1"


def test_without_rollout_a_new_version_is_verified_with_all_calls(canary: Canary) -> None:
    canary.canary.behaviour = "fail-rate:0.5"
    version_2(canary, rollout=None)
    started = canary.latest()
    assert (started.mode.value, started.weight, started.steps) == ("verify", 100, [])
    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        assert "alpha" not in engine.table().splits  # every call to the new version
        results = route(engine, 40)
    finally:
        engine.close()
    assert canary.canary.calls == 40 and canary.stable.calls == 0
    assert {r.model_id for r in results} == {"alpha", "beta"}  # failed calls: the fallback
    canary.analyst().tick(now=later(started, 1))
    done = canary.latest()
    assert (done.phase, done.rollback) == (Phase.FAILED, RollbackState.ROLLED_BACK)
    assert "post-deploy verification, all calls" in canary.message()
    assert live_version(canary) == "1"


def test_a_refused_push_leaves_the_rollback_pending_and_calls_on_stable(canary: Canary) -> None:
    canary.canary.behaviour = "status:500"
    version_2(canary)
    refuse_pushes(canary, "rollbacks need a review")
    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        route(engine, 600)  # its circuit opens after 3 failures: the rest count as failed
        assert canary.canary.calls < 10
        canary.analyst().tick(now=later(canary.latest(), 5))
        pending = canary.latest()
        assert (pending.phase, pending.rollback, pending.weight) == (
            Phase.FAILED,
            RollbackState.PENDING,
            0,
        )
        said = pending.analysis["pending"]
        assert "rollbacks need a review" in said["reason"]
        assert said["command"] == "grove rollback alpha --to 1"
        assert said["revert"].startswith("git revert ") and "This reverts commit" in said["message"]
        assert canary.log()[0].endswith("|alpha: version 2")  # nothing reached the remote
        assert live_version(canary) == "2"  # git says 2 ...
        assert engine.refresh()
        before = canary.canary.calls
        assert {r.version for r in route(engine, 100)} == {"1"}  # ... and calls go to 1
        assert canary.canary.calls == before
    finally:
        engine.close()
    status = canary.registry.run("status", "-o", "json")
    assert "RollbackPending" in status.out, status.out


def test_a_read_only_source_leaves_the_rollback_pending(
    canary: Canary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of manifests (not git): nothing to commit to; the calls stay on stable."""
    folder = tmp_path / "plain"
    shutil.copytree(canary.fleet.root / "manifests", folder / "manifests")
    monkeypatch.setenv("GROVE_REPO", str(folder))
    canary.settings = settings_module.load()
    canary.reconcile()
    canary.canary.behaviour = "status:500"
    (folder / "manifests" / "models" / "alpha.yaml").write_text(alpha_yaml("2", canary.canary.url))
    canary.reconcile()
    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        route(engine, 600)
        canary.analyst().tick(now=later(canary.latest(), 5))
        pending = canary.latest()
        assert (pending.phase, pending.rollback) == (Phase.FAILED, RollbackState.PENDING)
        assert pending.analysis["pending"]["command"] == "grove rollback alpha --to 1"
        assert engine.refresh()
        assert {r.version for r in route(engine, 50)} == {"1"}
    finally:
        engine.close()
    status = canary.registry.run("status")
    assert status.code != 0 and "RollbackPending" in status.out, status.out


def test_a_new_version_during_a_rollout_supersedes_it_from_the_same_stable(
    canary: Canary,
) -> None:
    version_2(canary)
    first = canary.latest()
    canary.push("alpha: version 3", {"models/alpha.yaml": alpha_yaml("3", canary.canary.url)})
    canary.reconcile()
    second = canary.latest()
    assert (second.stable_version, second.canary_version, second.phase) == ("1", "3", Phase.RUNNING)
    db = canary.db()
    with db.transaction() as connection:
        earlier = rollouts.history(connection, "alpha")[1]
    assert (earlier.id, earlier.phase, earlier.open) == (first.id, Phase.SUPERSEDED, False)
    assert earlier.message == "superseded by version 3"


def test_a_rollback_by_hand_after_a_promotion_is_not_analysed(canary: Canary) -> None:
    """Back to a version that served before: no verification against the one left."""
    version_2(canary)
    rollout = canary.latest()
    db = canary.db()
    with db.transaction(write=True) as connection:
        analysis.promote(connection, rollout, actor="test")
    done = canary.registry.run("rollback", "alpha")
    assert done.code == 0, done.out + done.err
    assert live_version(canary) == "1"
    assert canary.latest().id == rollout.id  # no new rollout: 1 served before
    assert canary.latest().phase is Phase.SUCCESSFUL


def test_a_rollback_by_hand_ends_a_pending_one_and_names_its_revision(canary: Canary) -> None:
    canary.canary.behaviour = "status:500"
    version_2(canary)
    hook = refuse_pushes(canary)
    engine = routing.RoutingEngine(canary.settings, canary.db())
    try:
        engine.refresh()
        route(engine, 600)
    finally:
        engine.close()
    canary.analyst().tick(now=later(canary.latest(), 5))
    assert canary.latest().rollback is RollbackState.PENDING
    hook.unlink()
    canary.push("revert by hand", {"models/alpha.yaml": alpha_yaml("1", canary.stable.url)})
    canary.reconcile()
    done = canary.latest()
    assert (done.rollback, done.open) == (RollbackState.ROLLED_BACK, False)
    assert done.rollback_commit == canary.log_head()
