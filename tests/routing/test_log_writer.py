"""The routing-log writer on real databases: rows put from many threads are all written
by flush, a full buffer drops and counts instead of growing, and a database that fails
drops the batch with one warning while the writer keeps going."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid

import pytest
from sqlalchemy import func, select

from reconciler import routing
from reconciler.store import routing_logs, tables
from reconciler.store.engine import Database


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
    writer = routing.LogWriter(db, batch=100, every_s=5.0)  # flush, not the timer, writes
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
    writer = routing.LogWriter(db, max_rows=50)  # not started: nothing drains the buffer
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
    writer = routing.LogWriter(db, every_s=0.05)
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
