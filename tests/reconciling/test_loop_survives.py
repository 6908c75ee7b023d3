"""The reconcile loop never dies: hostile commits and unexpected errors become status.

The real loop (``watching.Watcher.run`` in a thread, with its ref watcher) on a
real git repository and a real registry database (SQLite and PostgreSQL). A
commit with a 5,000-digit integer once crashed the loop's thread for good; an
unexpected exception anywhere in a cycle did the same. Now the first is a
diagnostic with file:line and a code, the second a ``Stalled`` condition with
reason ``UnexpectedError``, a ``reconcile_failed`` event, a metric and a
backoff; and the next good commit applies without waiting for the interval.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from reconciler.base import settings
from reconciler.gitops import watching
from tests.clocks import FakeClock
from tests.conftest import Registry, model_yaml

HUGE = "1" * 5000
INTERVAL_S = 60.0  # longer than any wait below: what applies came through the ref watcher


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.02)
    return found


@contextlib.contextmanager
def _running_loop(
    interval_s: float = INTERVAL_S,
) -> Iterator[tuple[watching.Watcher, threading.Thread]]:
    options = watching.Options(interval_s=interval_s, poll_s=0.05, lease_ttl_s=5.0)
    loop = watching.Watcher(settings.load(), options, holder=f"survivor-{time.monotonic_ns()}")
    thread = threading.Thread(target=loop.run, name="grove-reconcile-test", daemon=True)
    thread.start()
    try:
        yield loop, thread
    finally:
        loop.stop.set()
        loop.wake.set()
        thread.join(timeout=15)
        assert not thread.is_alive()


def _status(registry: Registry) -> dict[str, Any]:
    result = registry.run("status", "--json")
    assert "internal error" not in result.err
    status: dict[str, Any] = json.loads(result.out)
    return status


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == kind)
    return found


def _stalled_with(registry: Registry, reason: str) -> dict[str, Any] | None:
    status = _status(registry)
    stalled = _condition(status, "Stalled")
    if stalled["status"] == "True" and stalled["reason"] == reason:
        return status
    return None


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_huge_number_stalls_the_loop_and_the_next_good_commit_applies(
    registry: Registry,
) -> None:
    registry.fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    with _running_loop() as (_loop, thread):
        _eventually(lambda: "AIModel/a" in registry.live())
        registry.fleet.commit("huge", {"models/b.yaml": model_yaml("b", priority=HUGE)})
        status = _eventually(lambda: _stalled_with(registry, "ManifestsInvalid"))
        message = _condition(status, "Stalled")["message"]
        assert "1 manifest error(s); first: manifests/models/b.yaml:6: Y009 number " in message
        assert HUGE not in json.dumps(status)
        assert status["health"] == "Degraded"
        assert thread.is_alive()
        registry.fleet.commit("fixed", {"models/b.yaml": model_yaml("b", priority="7")})
        _eventually(lambda: "AIModel/b" in registry.live())
        status = _status(registry)
        assert _condition(status, "Stalled")["status"] == "False"
        assert (status["sync"], status["health"]) == ("Synced", "Healthy")
        assert thread.is_alive()


@pytest.mark.slow
def test_an_unexpected_error_in_a_cycle_is_stalled_counted_retried_and_survived(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry.fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    failed_before = _count("grove_reconcile_cycles_total", outcome="failed")
    errors_before = _count("grove_reconcile_loop_errors_total", stage="cycle")
    monkeypatch.setenv("GROVE_FAILPOINT_RECONCILE_RAISE", "injected fault\nsecond line")
    caplog.set_level(logging.INFO, logger="grove")
    with _running_loop() as (_loop, thread):
        status = _eventually(lambda: _stalled_with(registry, "UnexpectedError"))
        stalled = _condition(status, "Stalled")
        assert stalled["message"] == "RuntimeError: injected fault second line"
        assert "Traceback" not in json.dumps(status)
        assert status["health"] == "Degraded"
        assert status["lastError"] == "UnexpectedError: RuntimeError: injected fault second line"
        # the same revision is retried after the backoff, not skipped as a refused one would be
        _eventually(
            lambda: _count("grove_reconcile_cycles_total", outcome="failed") >= failed_before + 2
        )
        assert _count("grove_reconcile_loop_errors_total", stage="cycle") >= errors_before + 2
        events = registry.sql(
            "SELECT object_kind, object_id, revision, details FROM lifecycle_events "
            "WHERE event_type = 'reconcile_failed' ORDER BY id"
        )
        assert len(events) >= 2
        kind, ident, revision, details = events[0]
        details = json.loads(details) if isinstance(details, str) else details
        assert (kind, ident, revision) == ("Reconciler", "reconcile", registry.fleet.head())
        assert details == {"error": "RuntimeError", "message": stalled["message"]}
        traced = [r for r in caplog.records if r.exc_info and r.getMessage() == "unexpected-error"]
        assert traced and traced[0].levelno == logging.ERROR
        assert thread.is_alive()
        assert registry.live() == {}
        monkeypatch.delenv("GROVE_FAILPOINT_RECONCILE_RAISE")  # the "bug" goes away...
        registry.fleet.commit("next", {"models/b.yaml": model_yaml("b")})  # ...a commit comes
        _eventually(lambda: {"AIModel/a", "AIModel/b"} <= set(registry.live()))
        status = _status(registry)
        assert _condition(status, "Stalled")["status"] == "False"
        assert status["health"] == "Healthy"
        assert thread.is_alive()


def test_an_unexpected_error_in_a_tick_backs_off_and_the_tick_recovers(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    clock = FakeClock()
    loop = watching.Watcher(
        settings.load(),
        watching.Options(interval_s=INTERVAL_S, poll_s=0.05),
        holder="ticker",
        clock=clock,
    )
    before = _count("grove_reconcile_loop_errors_total", stage="tick")
    try:
        monkeypatch.setenv("GROVE_FAILPOINT_TICK_RAISE", "tick fault")
        loop.tick()  # does not raise
        assert _count("grove_reconcile_loop_errors_total", stage="tick") == before + 1
        assert loop.database_down and loop.backoff_s == 1.0
        waiting_until = loop.backoff_until
        loop.tick()  # inside the backoff: no new attempt
        assert loop.backoff_until == waiting_until
        monkeypatch.delenv("GROVE_FAILPOINT_TICK_RAISE")
        clock.advance_to(loop.backoff_until)  # the backoff has passed
        loop.tick()
        assert not loop.database_down
        assert "AIModel/a" in registry.live()
    finally:
        loop._shutdown()


def test_a_failure_that_cannot_be_recorded_is_logged_and_backed_off(
    fleet: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    monkeypatch.setenv("GROVE_REPO", str(fleet.root))
    monkeypatch.setenv("GROVE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GROVE_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    monkeypatch.setenv("GROVE_FAILPOINT_RECONCILE_RAISE", "injected fault")
    loop = watching.Watcher(settings.load(), watching.Options(interval_s=INTERVAL_S), holder="x")
    try:
        loop._cycle(triggered=False)  # the database is down: recording fails too
        assert loop.failed_unexpectedly and loop.failed_revision is None
        assert loop.backoff_until > time.monotonic()
        assert loop.next_fetch == loop.backoff_until
        unrecorded = [r for r in caplog.records if "could not record" in r.getMessage()]
        assert unrecorded
    finally:
        loop.stop.set()
        loop.db.dispose()


def test_an_unreadable_registry_is_waited_for_and_the_loop_recovers(
    registry: Registry, tmp_path: Path
) -> None:
    if not registry.url.startswith("sqlite"):
        pytest.skip("a damaged file is a SQLite matter")
    registry.fleet.commit("good", {"models/a.yaml": model_yaml("a")})
    clock = FakeClock()
    loop = watching.Watcher(
        settings.load(),
        watching.Options(interval_s=INTERVAL_S, poll_s=0.05),
        holder="damaged",
        clock=clock,
    )
    database = Path(registry.url.removeprefix("sqlite:///"))
    try:
        loop.tick()
        assert "AIModel/a" in registry.live()
        loop.db.engine.dispose()
        saved = database.read_bytes()
        database.write_bytes(b"this is not a database" * 1000)
        loop.tick()  # does not raise: waits, as for a database that is down
        assert loop.database_down and loop.backoff_s == 1.0
        database.write_bytes(saved)  # restored from the backup
        registry.fleet.commit("next", {"models/b.yaml": model_yaml("b")})
        clock.advance_to(loop.backoff_until)  # the backoff has passed
        loop.tick()
        assert not loop.database_down
        assert {"AIModel/a", "AIModel/b"} <= set(registry.live())
    finally:
        loop._shutdown()
