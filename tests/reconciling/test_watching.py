"""The reconcile loop's decisions, one tick at a time, in this process (both databases)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from sqlalchemy import update

from reconciler.base import errors, logs, settings
from reconciler.cli.registry import parse_duration
from reconciler.gitops import watching
from reconciler.routing import snapshots
from reconciler.store import coordination, tables
from tests.clocks import FakeClock
from tests.conftest import Registry, model_yaml


def _watcher(
    registry: Registry, clock: FakeClock | None = None, **overrides: float
) -> watching.Watcher:
    options = watching.Options(
        interval_s=overrides.get("interval_s", 60.0), poll_s=0.1, lease_ttl_s=5.0
    )
    return watching.Watcher(
        settings.load(),
        options,
        holder=f"test-{time.monotonic_ns()}",
        clock=clock or time.monotonic,
    )


def _due_now(watcher: watching.Watcher) -> None:
    watcher.next_fetch = 0.0


def test_a_tick_takes_the_lease_applies_then_waits_for_the_interval(registry: Registry) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    loop = _watcher(registry)
    try:
        loop.tick()
        assert loop.lease is not None and loop.lease.epoch == 1
        assert "AIModel/a" in registry.live()
        assert loop.cycles == 1
        registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})
        loop.tick()
        assert loop.cycles == 1  # not due: waits for the interval, a ref change or a trigger
        loop.repo_changed.set()
        loop.tick()
        assert loop.cycles == 2
        assert "AIModel/b" in registry.live()
        assert loop.snapshots.current.serial == 1  # refreshed on the tick that saw serial 1
        loop.tick()
        assert loop.snapshots.current.serial == 2
        assert set(loop.snapshots.current.models) == {"a", "b"}
    finally:
        loop._shutdown()


def test_a_trigger_forces_a_cycle_even_for_a_failed_revision(registry: Registry) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    registry.fleet.commit("broken", {"models/b.yaml": "meta: &x {}\n"})
    loop = _watcher(registry)
    try:
        loop.tick()
        assert loop.failed_revision == registry.fleet.head()
        _due_now(loop)
        loop.tick()
        assert loop.cycles == 2  # a cycle ran, but skipped the failed revision without planning
        assert registry.run("reconcile", "--now").code == 0
        loop.tick()
        assert loop.cycles == 3
        registry.fleet.commit("fixed", {"models/b.yaml": model_yaml("b")})
        _due_now(loop)
        loop.tick()
        assert loop.failed_revision is None
        assert "AIModel/b" in registry.live()
    finally:
        loop._shutdown()


def test_suspended_loops_keep_the_lease_and_status_but_do_not_apply(registry: Registry) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    registry.run("suspend")
    loop = _watcher(registry)
    try:
        loop.tick()
        assert loop.suspended and loop.lease is not None
        assert registry.live() == {}
        status = json.loads(registry.run("status", "--json").out)
        reconciling = next(c for c in status["conditions"] if c["type"] == "Reconciling")
        assert reconciling["reason"] == "Suspended"
        assert status["suspended"] is True
        registry.run("resume")
        loop.tick()
        assert "AIModel/a" in registry.live()
    finally:
        loop._shutdown()


def test_temporary_errors_back_off_exponentially_and_retry_after_the_backoff(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_REPO", "file:///nonexistent/fleet")
    clock = FakeClock()
    loop = _watcher(registry, clock, interval_s=600.0)
    try:
        delays = []
        for _ in range(4):
            clock.advance_to(loop.backoff_until)  # the backoff has passed
            _due_now(loop)
            loop.tick()
            delays.append(loop.backoff_s)
            assert loop.next_fetch == loop.backoff_until  # retried after the backoff
        assert delays == [1.0, 2.0, 4.0, 8.0]
        assert loop.backoff_until - clock() <= 8.0 * 1.1
    finally:
        loop._shutdown()


def test_a_leader_fetches_again_after_the_interval_and_not_before(registry: Registry) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    clock = FakeClock()
    loop = _watcher(registry, clock, interval_s=30.0)
    try:
        loop.tick()
        assert loop.cycles == 1
        assert 27.0 <= loop.next_fetch - clock() <= 33.0  # the interval, jittered by a tenth
        registry.fleet.commit("b", {"models/b.yaml": model_yaml("b")})  # no ref watcher here
        clock.advance_to(loop.next_fetch - 0.01)
        loop.tick()
        assert loop.cycles == 1 and "AIModel/b" not in registry.live()
        clock.advance_to(loop.next_fetch)
        loop.tick()
        assert loop.cycles == 2 and "AIModel/b" in registry.live()
    finally:
        loop._shutdown()


def test_an_unreachable_source_is_retried_at_least_once_an_interval(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROVE_REPO", "file:///nonexistent/fleet")
    clock = FakeClock()
    loop = _watcher(registry, clock, interval_s=3.0)
    try:
        delays = []
        for _ in range(5):
            clock.advance_to(loop.backoff_until)  # the retry is due when the backoff ends
            loop.tick()
            delays.append(loop.backoff_until - clock())
        assert loop.backoff_s == 16.0  # the backoff doubles on...
        assert 0.9 <= delays[0] <= 1.1 and 1.8 <= delays[1] <= 2.2
        assert delays[2:] == pytest.approx([3.0, 3.0, 3.0])  # ...but waits stop at the interval
    finally:
        loop._shutdown()


def test_a_loop_whose_lease_was_taken_stands_down_without_applying(registry: Registry) -> None:
    registry.fleet.commit("fleet", {"models/a.yaml": model_yaml("a")})
    first = _watcher(registry)
    second = _watcher(registry)
    try:
        first._keep_lease(time.monotonic())
        assert first.lease is not None
        with first.db.transaction(write=True) as connection:  # its lease runs out...
            connection.execute(update(tables.leases).values(expires_ms=0))
        second._keep_lease(time.monotonic())  # ...and another loop takes over
        assert second.lease is not None and second.lease.epoch == first.lease.epoch + 1
        first._cycle(triggered=False)  # still believes it leads
        assert first.lease is None
        assert registry.live() == {}  # the fence held
        second._cycle(triggered=False)
        assert "AIModel/a" in registry.live()
    finally:
        first._shutdown()
        second._shutdown()


def test_the_lease_is_renewed_without_a_new_epoch_and_released(registry: Registry) -> None:
    loop = _watcher(registry)
    db = loop.db
    try:
        with db.transaction(write=True) as connection:
            lease = coordination.acquire(connection, "a", 5000)
            again = coordination.acquire(connection, "a", 5000)
            other = coordination.acquire(connection, "b", 5000)
        assert lease is not None and again is not None
        assert again.epoch == lease.epoch
        assert other is None
        with db.transaction(write=True) as connection:
            coordination.check_fence(connection, again)
            coordination.release(connection, "a")
            assert coordination.current(connection) is None
            with pytest.raises(errors.LeaseLost):
                coordination.check_fence(connection, again)
            taken = coordination.acquire(connection, "b", 5000)
        assert taken is not None and taken.epoch == lease.epoch + 1
    finally:
        loop._shutdown()


def test_snapshots_swap_only_when_the_serial_moves_and_skip_broken_rows(
    registry: Registry,
) -> None:
    registry.fleet.commit(
        "fleet", {"models/a.yaml": model_yaml("a"), "models/b.yaml": model_yaml("b")}
    )
    registry.run("reconcile")
    loop = _watcher(registry)
    try:
        views = snapshots.Snapshots(loop.db, allow_local_endpoints=False)
        assert views.refresh() is True
        first = views.current
        assert views.refresh() is False
        assert views.current is first
        assert set(first.models) == {"a", "b"}
        with pytest.raises(TypeError):
            first.models["c"] = first.models["a"]  # type: ignore[index]
        registry.sql("UPDATE model_registry SET payload = '{}' WHERE object_id = 'b'")
        assert views.refresh(force=True) is True
        assert set(views.current.models) == {"a"}
    finally:
        loop._shutdown()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("500ms", 0.5), ("1h", 3600), ("5", 5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_log_lines_are_json_or_text(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logger = logging.getLogger("grove.test")
    logs.configure(json_lines=True)
    logs.event(logger, "reconcile", revision="abc", changes=2)
    logs.configure(json_lines=False)
    logs.event(logger, "backoff", level=logging.WARNING, seconds=1.5)
    first, second = stream.getvalue().splitlines()
    line = json.loads(first)
    assert (line["event"], line["revision"], line["changes"], line["level"]) == (
        "reconcile",
        "abc",
        2,
        "info",
    )
    assert second.endswith("warning backoff seconds=1.5")


def test_a_standby_sleeps_for_the_poll_interval_not_busily(registry: Registry) -> None:
    leader = _watcher(registry)
    standby = _watcher(registry)
    try:
        leader.tick()
        standby.tick()
        assert standby.lease is None
        assert standby._sleep_s() == pytest.approx(standby.options.poll_s, abs=0.06)
    finally:
        leader._shutdown()
        standby._shutdown()


def test_a_loop_started_while_the_database_is_down_waits_and_backs_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("GROVE_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    monkeypatch.setenv("GROVE_REPO", str(tmp_path))
    clock = FakeClock()
    loop = watching.Watcher(
        settings.load(), watching.Options(poll_s=0.1), holder="down", clock=clock
    )
    try:
        loop.tick()
        assert loop.database_down
        first = loop.backoff_until
        assert 0.5 < loop._sleep_s() <= 1.2
        clock.advance(0.5)
        loop.tick()  # still inside the backoff: no new attempt, no new backoff
        assert loop.backoff_until == first
        assert loop.backoff_s == 1.0
    finally:
        loop.stop.set()
        loop.db.dispose()
