"""A plan from the files a change touched is the plan of the whole fleet.

`reconciling.Reconciler.plan` plans a change since a fleet it keeps from the
changed files only (``_plan_change``); ``plan(full=True)`` reads every file and
every live object. For random changes of a small fleet (versions, states,
capabilities, fallbacks, chains, lifecycle dates, removals, new objects,
duplicates, cycles, multi-document files, files outside the manifests) both
must give the same plan, the same violations and the same findings, line
numbers included. Real git and a real SQLite registry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconciler.base import settings as settings_module
from reconciler.gitops import fleets, reconciling, watching
from reconciler.store import migrating
from reconciler.store.engine import Database
from tests.conftest import GIT_ENV, Registry, model_yaml

TODAY = dt.date(2026, 6, 1)
MODELS = ("m0", "m1", "m2", "m3", "m4", "m5")
RULES = ("r0", "r1", "r2")


def git(root: Path, *args: str) -> None:
    """git with the suite's environment (no global config, no gc: tests/conftest.GIT_ENV)."""
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def model(ident: str, version: int, draw: st.DrawFn) -> str:
    score = st.sampled_from(["0.2", "0.5", "0.9"])
    state = draw(st.sampled_from(["enabled", "enabled", "disabled", "retired"]))
    others = [m for m in (*MODELS, "ghost") if m != ident]
    fallbacks = draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
    life = draw(
        st.sampled_from(
            [
                "",
                "\n  lifecycle: {sunsetDate: 2026-06-20}",
                "\n  lifecycle: {sunsetDate: 2026-05-01}",
                "\n  lifecycle: {deprecationDate: 2026-01-01, successor: m0}",
            ]
        )
    )
    return (
        f'meta: {{id: {ident}, type: AIModel, version: "{version}"}}\n'
        f"payload:\n  name: {ident}\n  provider: mock\n"
        f"  capabilities: {{reasoning: {draw(score)}, speed: {draw(score)}}}\n"
        f"  state: {state}\n  fallbacks: [{', '.join(fallbacks)}]{life}\n"
    )


def rule(ident: str, draw: st.DrawFn) -> str:
    requires = draw(st.sampled_from(["[reasoning]", "[speed]", "[reasoning, speed]"]))
    chain = draw(st.lists(st.sampled_from(MODELS), max_size=2, unique=True))
    task = draw(st.sampled_from([ident, ident, "shared"]))
    return (
        f'meta: {{id: {ident}, type: RoutingRule, version: "1"}}\n'
        f"payload:\n  taskType: {task}\n  requires: {requires}\n"
        f"  minScore: {draw(st.sampled_from(['0.1', '0.4', '0.8']))}\n"
        f"  chain: [{', '.join(chain)}]\n"
        f"  enabled: {draw(st.sampled_from(['true', 'true', 'false']))}\n"
    )


def first_fleet(root: Path) -> None:
    folder = root / "manifests"
    (folder / "models").mkdir(parents=True)
    (folder / "rules").mkdir()
    for i, ident in enumerate(MODELS):
        fallback = f"[{MODELS[i + 1]}]" if i < 2 else "[]"
        (folder / "models" / f"{ident}.yaml").write_text(
            f'meta: {{id: {ident}, type: AIModel, version: "1"}}\n'
            f"payload:\n  name: {ident}\n  provider: mock\n"
            f"  capabilities: {{reasoning: 0.9, speed: 0.9}}\n  fallbacks: {fallback}\n"
        )
    for ident in RULES:
        (folder / "rules" / f"{ident}.yaml").write_text(
            f'meta: {{id: {ident}, type: RoutingRule, version: "1"}}\n'
            f"payload:\n  taskType: {ident}\n  requires: [reasoning]\n  minScore: 0.3\n"
        )
    (root / "README.md").write_text("fleet\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fleet")


def change(root: Path, draw: st.DrawFn, versions: dict[str, int]) -> None:
    """One to three edits of the fleet, committed."""
    folder = root / "manifests"
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(
                ["model", "model", "state", "same-version", "delete", "rule", "pair", "outside"]
            )
        )
        ident = draw(st.sampled_from(MODELS))
        path = folder / "models" / f"{ident}.yaml"
        if what == "model":
            versions[ident] = versions.get(ident, 1) + 1
            path.write_text(model(ident, versions[ident], draw))
        elif what == "state" and path.exists():  # the same content but the state
            text = path.read_text()
            for old in ("enabled", "disabled", "retired"):
                text = text.replace(f"state: {old}", "state: STATE")
            if "state: STATE" not in text:
                text = text.replace("  fallbacks:", "  state: STATE\n  fallbacks:")
            new = draw(st.sampled_from(["enabled", "disabled", "retired"]))
            path.write_text(text.replace("STATE", new))
        elif what == "same-version" and path.exists():  # content changed, version kept
            path.write_text(model(ident, versions.get(ident, 1), draw))
        elif what == "delete":
            path.unlink(missing_ok=True)
        elif what == "rule":
            target = draw(st.sampled_from(RULES))
            (folder / "rules" / f"{target}.yaml").write_text(rule(target, draw))
        elif what == "pair":  # two documents in one file, possibly a duplicate id
            other = draw(st.sampled_from(["m6", "m7", ident]))
            (folder / "models" / "pair.yaml").write_text(
                model("m8", 1, draw) + "---\n" + model(other, 1, draw)
            )
        else:
            (root / "README.md").write_text(f"fleet {draw(st.integers(0, 9))}\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", "change")


def reconciler(root: Path, db: Database, data: Path) -> reconciling.Reconciler:
    config = settings_module.load(repo=str(root), db_url=db.url, data_dir=str(data))
    return reconciling.Reconciler(config, reconciling.open_source(config), db, today=TODAY)


def compare(root: Path, db: Database, data: Path) -> bool:
    """Plan incrementally and whole, assert they agree, apply (forced); True when the
    incremental plan was taken."""
    planner = reconciler(root, db, data)
    try:
        quick = planner.plan()
        whole = planner.plan(full=True)
        assert quick.plan == whole.plan
        assert quick.diagnostics == whole.diagnostics
        if whole.plan is not None and whole.plan.changes:
            planner.apply(whole.plan, actor="test", force=True)
    finally:
        planner.source.close()
    return quick.live.total is not None


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_incremental_plans_equal_full_plans(sqlite_template: Path, data: st.DataObject) -> None:
    fleets.forget()  # each example starts from what it applies itself
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        first_fleet(root)
        # a copy of the migrated template: a millisecond, against a quarter of a second
        shutil.copyfile(sqlite_template, f"{tmp}/registry.db")
        db = Database(f"sqlite:///{tmp}/registry.db")
        try:
            migrating.upgrade(db)  # at head already: nothing to do
            compare(root, db, Path(tmp) / "data")
            versions: dict[str, int] = {}
            for _ in range(5):
                change(root, data.draw, versions)
                event("incremental" if compare(root, db, Path(tmp) / "data") else "whole")
        finally:
            db.dispose()


def test_a_one_model_change_is_planned_from_its_file(tmp_path: Path) -> None:
    """After an apply, a version bump is planned from the changed file alone (the live
    state holds only its object, with the count of all), and equals the whole plan;
    full=True plans from everything even when nothing changed."""
    root = tmp_path / "fleet"
    root.mkdir()
    first_fleet(root)
    db = Database(f"sqlite:///{tmp_path}/registry.db")
    data = tmp_path / "data"
    try:
        migrating.upgrade(db)
        planner = reconciler(root, db, data)
        assert planner.reconcile(actor="test").state == "applied"
        whole = planner.plan(full=True)
        assert whole.plan is not None and whole.plan.empty
        assert not whole.live.partial and whole.live.total is None  # every object read
        text = (root / "manifests/models/m3.yaml").read_text().replace('"1"', '"2"')
        (root / "manifests/models/m3.yaml").write_text(text.replace("0.9, speed", "0.8, speed"))
        git(root, "commit", "-q", "-am", "bump m3")
        outcome = planner.reconcile(actor="test")
        planner.source.close()
        assert outcome.state == "applied"
        assert outcome.planned.live.total == len(MODELS) + len(RULES)
        assert set(outcome.planned.live.objects) == {("AIModel", "m3")}
        assert outcome.plan is not None
        assert [(c.kind.value, c.object_id) for c in outcome.plan.changes] == [("version", "m3")]
    finally:
        db.dispose()


def test_a_model_named_twice_by_one_object(tmp_path: Path) -> None:
    """A model that is both the fallback and the successor of another, then neither:
    planned from the changed file, equal to the whole plan (hypothesis found it)."""
    root = tmp_path / "fleet"
    root.mkdir()
    first_fleet(root)
    db = Database(f"sqlite:///{tmp_path}/registry.db")
    data = tmp_path / "data"
    path = root / "manifests/models/m5.yaml"
    try:
        migrating.upgrade(db)
        compare(root, db, data)
        for version, extra in ((2, "  fallbacks: [m0]\n  lifecycle: {successor: m0}\n"), (3, "")):
            path.write_text(
                f'meta: {{id: m5, type: AIModel, version: "{version}"}}\n'
                "payload:\n  name: m5\n  provider: mock\n"
                f"  capabilities: {{reasoning: 0.9, speed: 0.9}}\n{extra}"
            )
            git(root, "commit", "-q", "-am", f"m5 v{version}")
            assert compare(root, db, data)
    finally:
        db.dispose()


def test_the_loop_plans_a_full_cycle_every_full_check_s(registry: Registry) -> None:
    """A loop's cycle is planned whole once full_check_s has passed since the last one
    (here at once); with the default hour, the next cycles are not."""
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    options = watching.Options(interval_s=60.0, poll_s=0.1, lease_ttl_s=5.0, full_check_s=0.0)
    loop = watching.Watcher(settings_module.load(), options, holder=f"t-{time.monotonic_ns()}")
    try:
        started = loop.last_full
        fulls = _spy_full(loop)
        loop.tick()
        assert "AIModel/a" in registry.live()
        assert fulls == [True]  # this cycle was planned whole
        assert loop.last_full > started
    finally:
        loop._shutdown()
    registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})
    options = dataclasses.replace(options, full_check_s=3600.0)
    hourly = watching.Watcher(settings_module.load(), options, holder=f"h-{time.monotonic_ns()}")
    try:
        started = hourly.last_full
        fulls = _spy_full(hourly)
        hourly.tick()
        assert "AIModel/b" in registry.live()
        assert fulls == [False]
        assert hourly.last_full == started
    finally:
        hourly._shutdown()


def _spy_full(loop: watching.Watcher) -> list[bool]:
    """The ``full`` of every reconcile the loop asks its reconciler for."""
    seen: list[bool] = []
    real = loop.reconciler.reconcile

    def reconcile(**options: Any) -> reconciling.CycleOutcome:
        seen.append(options["full"])
        return real(**options)

    loop.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    return seen
