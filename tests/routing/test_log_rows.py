"""One bad routing-log row never drops the batch it travels in (issue 13).

Rows are bounded when they are built (no NUL byte, counts that fit the columns,
finite latency and cost), and a row the database still refuses is left out alone:
the writer retries its batch row by row, writes the others, counts the drop and
logs it with the error type, never a value. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from reconciler.base import settings
from reconciler.routing import analysis
from reconciler.routing import engine as routing
from reconciler.runtime.logwriter import LogWriter
from reconciler.store import routing_logs, tables
from reconciler.store.engine import Database
from tests.conftest import Registry
from tests.routing.conftest import commit_documents, model_doc, rule_doc
from tests.routing.fakes import FakeProvider
from tests.routing.test_hostile_answers import HUGE
from tests.routing.test_log_writer import _attempt, _logged

TOO_BIG = 2**63  # no integer column holds it: PostgreSQL's is 32 bits, SQLite's 64


def _dropped() -> float:
    return REGISTRY.get_sample_value("grove_routing_log_rows_total", {"outcome": "dropped"}) or 0.0


@pytest.mark.slow
def test_three_absurd_answers_among_two_hundred_calls_leave_two_hundred_rows(
    registry: Registry, fake: Callable[[str], FakeProvider], local_endpoints: None
) -> None:
    """The issue's case: three of 200 concurrent calls carried absurd counts, and the
    batch they travelled in (every row) was lost. One model, so those three fail."""
    server = fake("openai")
    server.script = {
        n: server.answering("usage.prompt_tokens", literal)
        for n, literal in zip((50, 100, 150), (HUGE, "1e400", "-1000000000"), strict=True)
    }
    # a busy machine: 200 calls at once to one fake take a while; none may time out.
    # Without pricing no cost is computed: the 400-digit count went into the row as is.
    document = model_doc(
        "only", server, provider="openai-compatible", timeoutMs=30_000, pricing=None
    )
    commit_documents(registry, document, rule_doc("think"))
    engine = routing.RoutingEngine.open(settings=settings.load())
    try:

        async def calls() -> list[object]:
            request = routing.TaskRequest(task_type="think", prompt="hi")
            return await asyncio.gather(
                *(engine.route_request(request) for _ in range(200)), return_exceptions=True
            )

        outcomes = routing.run(engine, calls())
        engine.flush_logs()
    finally:
        engine.close()
    rows = registry.sql(
        "SELECT success, error_kind, count(*) FROM routing_logs GROUP BY success, error_kind"
    )
    assert sorted((bool(r[0]), r[1], r[2]) for r in rows) == [
        (False, "bad_response", 3),
        (True, None, 197),
    ]
    failed = [o for o in outcomes if isinstance(o, routing.RoutingFailed)]
    assert len(failed) == 3
    assert all(isinstance(o, routing.RoutingResult | routing.RoutingFailed) for o in outcomes)
    assert {f.attempts[0].outcome for f in failed} == {"bad_response"}
    assert registry.sql("SELECT count(*) FROM routing_logs WHERE cost_usd < 0")[0][0] == 0


@pytest.mark.slow
def test_a_row_the_database_refuses_is_dropped_alone_counted_and_logged(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that reach the writer unbounded (a bug elsewhere, another producer): one
    with a count no column holds, and on PostgreSQL one with a NUL byte in its text."""
    good = [_attempt() for _ in range(40)]
    bad = [dataclasses.replace(_attempt(), input_tokens=TOO_BIG)]
    if not database.is_sqlite:  # SQLite stores NUL; PostgreSQL's text refuses it
        bad.append(dataclasses.replace(_attempt("sk-canary\x00model")))
    rows = good[:20] + bad + good[20:]
    before = _dropped()
    writer = LogWriter(database, every_s=60.0)  # one frame, sent by flush
    writer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="grove.router"):
            for row in rows:
                writer.put(row)
            writer.flush()
    finally:
        writer.stop()
    assert (writer.written, writer.dropped) == (40, len(bad))
    assert _logged(database) == 40
    assert _dropped() - before == len(bad)
    dropped = [r for r in caplog.records if r.getMessage() == "routing-log-dropped"]
    assert len(dropped) == 1
    fields = dropped[0].fields  # type: ignore[attr-defined]
    assert fields["rows"] == len(bad) and fields["reason"].startswith("row refused: ")
    assert "canary" not in str(fields) and str(TOO_BIG) not in str(fields)
    assert sum(_metric(database, "attempts")) == 40  # the sums cover the rows written


def _metric(database: Database, kind: str) -> list[float]:
    table = tables.model_metrics
    query = select(table.c.metric_value).where(table.c.metric_type == kind)
    with database.transaction() as connection:
        return [float(v) for v in connection.execute(query).scalars()]


def test_write_batch_reports_what_it_refused(database: Database) -> None:
    rows = [_attempt(), dataclasses.replace(_attempt(), output_tokens=TOO_BIG), _attempt()]
    with database.transaction(write=True) as connection:
        refused = routing_logs.write_batch(connection, rows)
    assert refused.rows == 1 and sum(refused.reasons.values()) == 1
    assert str(refused).startswith("row refused: ")
    assert _logged(database) == 2
    with database.transaction(write=True) as connection:  # a clean batch: nothing refused
        assert routing_logs.write_batch(connection, [_attempt()]) == routing_logs.Refused()


def _built(**overrides: Any) -> routing_logs.Attempt:
    fields: dict[str, Any] = {
        "request_id": "trace-1",
        "model_id": "m1",
        "task_type": "think",
        "capability_required": "reasoning",
        "latency_ms": 1.0,
        "success": True,
        "attempt": 1,
        "error_kind": None,
        "input_tokens": 1,
        "output_tokens": 1,
        "cost_usd": 0.0,
        "reason": "priority match",
        "chain": ["m1"],
        "rule_id": "think",
        "strategy": "priority",
        "revision": None,
        "error": None,
        "timestamp": dt.datetime.now(dt.UTC),
    }
    return routing_logs.Attempt.of(**{**fields, **overrides})


def test_a_row_is_bounded_when_it_is_built_and_every_backend_takes_it(
    database: Database,
) -> None:
    """Whatever the router hands over, Attempt.of makes a row both backends accept."""
    row = _built(
        request_id="trace\x00-1",
        model_id="m\x001",
        task_type="t" * 5000,
        latency_ms=math.inf,
        success=False,
        attempt=2**40,
        error_kind="bad_response" * 10,
        input_tokens=10**400,
        output_tokens=-5,
        cost_usd=-math.inf,
        reason="r\x00" * 5000,
        chain=[f"m{i}" for i in range(1000)],
        error="e" * 10_000,
    )
    assert row.model_id == "m1" and len(row.task_type) == routing_logs.MAX_TEXT
    assert row.latency_ms == routing_logs.INT_MAX and row.attempt == 1
    assert len(row.error_kind or "") == routing_logs.ERROR_KIND_LENGTH
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (None, None, None)
    assert "\x00" not in row.decision["reason"] and len(row.decision["chain"]) == 100
    assert len(row.decision["error"]) == 300
    others = [
        _built(latency_ms=math.nan, cost_usd=math.nan),
        _built(latency_ms=-3.0, cost_usd=math.inf, input_tokens=True),
    ]
    assert [(r.latency_ms, r.cost_usd, r.input_tokens) for r in others] == [
        (0.0, None, 1),
        (0.0, None, None),
    ]
    with database.transaction(write=True) as connection:
        assert routing_logs.write_batch(connection, [row, *others]) == routing_logs.Refused()
    assert _logged(database) == 3


def test_costs_stored_before_answers_were_checked_do_not_make_metrics_negative(
    database: Database,
) -> None:
    """Rows an earlier version wrote from a negative or infinite count: the model's
    metrics sum only the costs that can be."""
    rows = [
        dataclasses.replace(_attempt(), cost_usd=cost)
        for cost in (0.25, -1000.0, math.inf, math.nan, None, 0.5)
    ]
    with database.transaction(write=True) as connection:
        assert routing_logs.write_batch(connection, rows) == routing_logs.Refused()
    metrics = analysis.model_metrics(database, "m1", window_s=3600)
    assert metrics.requests == 6 and metrics.cost_usd == 0.75
