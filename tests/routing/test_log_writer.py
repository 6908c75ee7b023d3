"""The routing-log writer on real databases: rows put from many threads are all written
by flush, a full buffer drops and counts instead of growing, and a database that fails
drops the batch with one warning while the writer keeps going. Its child process: handed
every row at stop, given the URL out of sight of ``ps``, replaced when killed (what it
held counted), deaf to a terminal's and a service manager's signals, retried less and
less often when it cannot start, ended by a stop that a stalled database would hold up
(every row counted), and gone when its parent is."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select

from reconciler.runtime import logwriter
from reconciler.runtime.logwriter import CHILD, LogWriter
from reconciler.store import routing_logs, tables
from reconciler.store.engine import Database
from tests.conftest import REPO_ROOT, running

# each starts the writer child process: the SQLite variant stays in the inner loop
pytestmark = pytest.mark.slow_on_pg


@pytest.fixture
def db(database: Database) -> Database:
    return database


def _attempt(model_id: str = "m1") -> routing_logs.Attempt:
    return routing_logs.Attempt(
        request_id=str(uuid.uuid4()),
        model_id=model_id,
        task_type="think",
        capability_required="reasoning",
        latency_ms=1.5,
        success=True,
        attempt=1,
        error_kind=None,
        input_tokens=5,
        output_tokens=1,
        cost_usd=0.0001,
        decision={"reason": "priority match", "chain": [model_id]},
        timestamp=dt.datetime.now(dt.UTC),
    )


def _logged(db: Database) -> int:
    with db.transaction() as connection:
        return int(
            connection.execute(select(func.count()).select_from(tables.routing_logs)).scalar_one()
        )


def test_rows_from_many_threads_are_all_written_by_flush(db: Database) -> None:
    writer = LogWriter(db, batch=100, every_s=5.0)  # flush, not the timer, writes
    writer.start()
    try:

        def produce() -> None:
            for _ in range(500):
                writer.put(_attempt())

        threads = [threading.Thread(target=produce) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.flush()
        assert _logged(db) == 2000
        assert (writer.written, writer.dropped) == (2000, 0)
    finally:
        writer.stop()


def test_a_full_buffer_drops_and_counts(db: Database) -> None:
    writer = LogWriter(db, max_rows=50)  # not started: nothing drains the buffer
    for _ in range(80):
        writer.put(_attempt())
    assert writer.dropped == 30
    writer.start()
    writer.flush()
    writer.stop()
    assert _logged(db) == 50


def _rename(db: Database, old: str, new: str) -> None:
    with db.transaction(write=True) as connection:
        connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


def test_a_failing_database_drops_the_batch_and_the_writer_goes_on(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(db, every_s=0.05)
    writer.start()
    try:
        _rename(db, "routing_logs", "routing_logs_away")  # every insert now fails
        with caplog.at_level(logging.WARNING, logger="grove.router"):
            writer.put(_attempt())
            writer.flush()
        assert writer.dropped == 1
        assert [r.getMessage() for r in caplog.records] == ["routing-log-dropped"]
        _rename(db, "routing_logs_away", "routing_logs")
        writer.put(_attempt())
        writer.flush()
        assert _logged(db) == 1
        assert writer.is_alive()
    finally:
        writer.stop()


def test_a_batch_writes_a_log_row_per_attempt_and_sums_each_model_up(db: Database) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        dataclasses.replace(_attempt("m1"), latency_ms=10.0, cost_usd=0.25, timestamp=base),
        dataclasses.replace(
            _attempt("m1"), latency_ms=30.0, cost_usd=0.5, timestamp=base + dt.timedelta(hours=2)
        ),
        dataclasses.replace(
            _attempt("m1"),
            latency_ms=2.0,
            success=False,
            error_kind="timeout",
            cost_usd=None,
            timestamp=base + dt.timedelta(hours=1),
        ),
        dataclasses.replace(
            _attempt("m2"), latency_ms=7.0, success=False, cost_usd=None, timestamp=base
        ),
    ]
    newest = {"m1": base + dt.timedelta(hours=2), "m2": base}
    with db.transaction(write=True) as connection:
        routing_logs.write_batch(connection, rows)
    with db.transaction() as connection:
        logged = connection.execute(select(tables.routing_logs.c.id)).scalars().all()
        metrics = connection.execute(select(tables.model_metrics)).all()
    assert len(logged) == 4
    # time-ordered ids (version 7): new rows append at the end of the primary-key index
    assert all(i.version == 7 for i in logged)
    ours = {(m.model_id, m.metric_type): float(m.metric_value) for m in metrics}
    assert ours == {
        ("m1", "attempts"): 3,
        ("m1", "failures"): 1,
        ("m1", "latency_ms"): 14.0,
        ("m1", "latency_ms_max"): 30.0,
        ("m1", "cost_usd"): 0.75,
        ("m2", "attempts"): 1,
        ("m2", "failures"): 1,
        ("m2", "latency_ms"): 7.0,
        ("m2", "latency_ms_max"): 7.0,
    }  # no cost row for a model none of whose attempts had a cost
    for m in metrics:  # stamped with the model's newest attempt
        stamp = m.timestamp if m.timestamp.tzinfo else m.timestamp.replace(tzinfo=dt.UTC)
        assert stamp == newest[m.model_id], (m.model_id, m.metric_type, stamp)


# ---------------------------------------------------------------- the writer process


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stop_hands_every_queued_row_to_the_child_before_it_ends(db: Database) -> None:
    writer = LogWriter(db, batch=100, every_s=60.0)  # neither the timer nor flush sends
    writer.start()
    for _ in range(1000):
        writer.put(_attempt())
    writer.stop()
    assert (writer.written, writer.dropped) == (1000, 0)
    assert _logged(db) == 1000
    assert writer.child_pid is None and not writer.is_alive()


def test_the_database_url_is_not_on_the_childs_command_line(db: Database) -> None:
    writer = LogWriter(db)
    writer.start()
    try:
        writer.put(_attempt())
        writer.flush()
        assert writer.child_pid is not None
        command = Path(f"/proc/{writer.child_pid}/cmdline").read_bytes().decode()
        target = db.sqlite_file() or make_url(db.url).database
        assert str(target) not in command and db.url not in command
        assert "reconciler.runtime.logwriter" in command
    finally:
        writer.stop()


@pytest.mark.slow
def test_a_killed_child_is_replaced_and_what_it_held_is_counted(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(db, every_s=0.05, respawn_s=0.05)
    writer.start()
    try:
        writer.put(_attempt())
        writer.flush()
        first = writer.child_pid
        assert first is not None and writer.written == 1
        with caplog.at_level(logging.WARNING, logger="grove.router"):
            os.kill(first, signal.SIGKILL)
            assert _gone_within(first, 5)
            for _ in range(50):
                writer.put(_attempt())
            writer.flush()
        assert writer.child_pid not in (None, first)
        # rows sent to the dead child before its reader noticed are dropped and counted
        assert writer.written + writer.dropped == 51
        assert _logged(db) == writer.written
        assert "routing-log-writer-exited" in [r.getMessage() for r in caplog.records]
        for _ in range(10):
            writer.put(_attempt())
        writer.flush()
        assert _logged(db) == writer.written and writer.written + writer.dropped == 61
    finally:
        writer.stop()


@pytest.mark.slow
def test_the_child_ignores_interrupt_and_terminate_and_its_parent_ends_it(db: Database) -> None:
    writer = LogWriter(db, every_s=0.05)
    writer.start()
    try:
        writer.put(_attempt())
        writer.flush()
        child = writer.child_pid
        assert child is not None
        os.kill(child, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
        os.kill(child, signal.SIGTERM)  # so does a service manager's stop
        time.sleep(0.3)
        writer.put(_attempt())
        writer.flush()
        assert writer.child_pid == child and (writer.written, writer.dropped) == (2, 0)
    finally:
        writer.stop()
    assert _gone_within(child, 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "broken",
    [
        [sys.executable, "-c", "raise SystemExit(3)"],  # starts, fails before it is ready
        ["/nonexistent/grove-python"],  # cannot be started at all
    ],
    ids=["exits", "cannot-start"],
)
def test_a_child_that_cannot_start_is_retried_less_often_and_no_row_is_lost(
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    broken: list[str],
) -> None:
    monkeypatch.setattr(logwriter, "CHILD", broken)
    writer = LogWriter(db, every_s=0.02, respawn_s=0.05)
    writer.start()
    try:

        def tries() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if r.getMessage() in ("routing-log-writer-exited", "routing-log-writer-failed")
            ]

        with caplog.at_level(logging.WARNING, logger="grove.router"):
            for _ in range(20):
                writer.put(_attempt())
            time.sleep(1.0)  # tries at 0, 0.05, 0.15, 0.35 and 0.75 s: five, not fifty
            # a loaded machine starts a Python child in more than the 0.05 s wait: give
            # the second try time (by 1.55, 3.15 and 6.35 s: eight at most by then)
            deadline = time.monotonic() + 9
            while len(tries()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert 2 <= len(tries()) <= 8, tries()
        assert writer.written == 0 and writer.dropped == 0  # the rows wait for a writer
        monkeypatch.setattr(logwriter, "CHILD", CHILD)
        writer.flush(timeout=30)
        assert (writer.written, writer.dropped) == (20, 0)
        assert _logged(db) == 20
    finally:
        writer.stop()


@contextlib.contextmanager
def _writes_blocked(db: Database) -> Iterator[None]:
    """Hold the lock every routing-log insert needs, as a stalled database would."""
    with db.transaction(write=True) as connection:  # BEGIN IMMEDIATE on SQLite
        if not db.is_sqlite:
            connection.exec_driver_sql("LOCK TABLE routing_logs IN ACCESS EXCLUSIVE MODE")
        yield


@pytest.mark.slow
def test_stop_with_a_stalled_database_ends_the_child_and_counts_every_row(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(db, batch=100, every_s=60.0, stop_s=1.0)
    writer.start()
    writer.put(_attempt())
    writer.flush()  # the child is up and has written one row
    with _writes_blocked(db):
        for _ in range(3000):
            writer.put(_attempt())
        child = writer.child_pid
        with caplog.at_level(logging.WARNING, logger="grove.router"):
            writer.stop()  # the child cannot write; stop must not wait for it for ever
        assert not writer.is_alive() and child is not None and _gone_within(child, 5)
    assert writer.written + writer.dropped == 3001  # none lost without being counted
    assert writer.dropped >= 2900
    assert _logged(db) == writer.written
    dropped = [r for r in caplog.records if r.getMessage() == "routing-log-dropped"]
    assert sum(r.fields["rows"] for r in dropped) == writer.dropped  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_terminals_ctrl_c_does_not_reach_a_child_that_is_starting(db: Database) -> None:
    """Ctrl-C goes to the terminal's whole process group: the server handles it (and
    stops the child itself), and the child, in a session of its own, never sees it,
    not even in the moment before it ignores the signal."""
    script = textwrap.dedent(f"""
        import signal, sys, time
        from tests.routing.test_log_writer import _attempt
        from reconciler.store.engine import Database
        from reconciler.runtime.logwriter import LogWriter
        signal.signal(signal.SIGINT, lambda *_: None)  # the server's own handler
        writer = LogWriter(Database({db.url!r}), every_s=0.01)
        writer.start()
        writer.put(_attempt())
        while writer.child_pid is None:
            time.sleep(0.001)
        print(writer.child_pid, flush=True)
        sys.stdin.readline()
        writer.flush()
        print(writer.child_pid, writer.spawned, writer.written, writer.dropped, flush=True)
        writer.stop()
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,  # a process group of its own, as a terminal's job has
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        child = int(parent.stdout.readline())
        os.killpg(parent.pid, signal.SIGINT)  # while the child is still importing
        parent.stdin.write("\n")
        parent.stdin.flush()
        after = parent.stdout.readline().split()
    finally:
        parent.stdin.close()
        parent.wait(30)
        parent.stdout.close()
    assert after == [str(child), "1", "1", "0"]


@pytest.mark.slow
def test_the_child_ends_when_its_parent_is_killed(db: Database) -> None:
    script = textwrap.dedent(f"""
            import sys, time
            from tests.routing.test_log_writer import _attempt
            from reconciler.store.engine import Database
            from reconciler.runtime.logwriter import LogWriter
            writer = LogWriter(Database({db.url!r}))
            writer.start()
            writer.put(_attempt())
            writer.flush()
            print(writer.child_pid, flush=True)
            time.sleep(60)
        """)
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _logged(db) == 1
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
    assert _gone_within(child, 5)
