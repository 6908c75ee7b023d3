"""Routing logs and model metrics: written in batches, read for aggregation.

The router builds one row per attempt with :meth:`Attempt.of`, which bounds every
field to what the columns hold on SQLite and PostgreSQL (no NUL byte in text,
integers inside a 32-bit column, finite non-negative latency and cost, a
bounded decision), so that a row the database refuses is hard to produce at all.
A background writer calls :func:`write_batch` with many at once, in one
transaction, off the request path: a ``routing_logs`` row per attempt, and per
model a few ``model_metrics`` rows summing up the batch. Should the database
still refuse a row, the batch is retried row by row inside the transaction
(savepoints): the refused row is left out alone, the others are written, and
the caller learns how many were refused and why. :func:`attempts` reads one
model's window back for `analysis`.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Float, and_, case, func, insert, or_, select

from reconciler.base import ids
from reconciler.store import tables

INT_MAX = 2**31 - 1  # an Integer column on PostgreSQL (SQLite holds 64 bits)
MAX_TEXT = 1_000  # characters of a text field kept
MAX_REASON = 2_000  # characters of the decision's reason kept
MAX_CHAIN = 100  # models of the decision's chain kept
ERROR_KIND_LENGTH = 32  # String(32)


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One call to one model, as logged."""

    request_id: str
    model_id: str
    task_type: str
    capability_required: str
    latency_ms: float
    success: bool
    attempt: int
    error_kind: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    decision: dict[str, Any]
    timestamp: dt.datetime
    model_version: str | None = None

    @classmethod
    def of(
        cls,
        *,
        request_id: str,
        model_id: str,
        task_type: str,
        capability_required: str,
        latency_ms: float,
        success: bool,
        attempt: int,
        error_kind: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: float | None,
        reason: str,
        chain: Sequence[str],
        rule_id: str | None,
        strategy: str,
        revision: str | None,
        error: str | None,
        timestamp: dt.datetime,
        model_version: str | None = None,
    ) -> Attempt:
        """A row every backend accepts: text without NUL bytes and of bounded length, counts
        that fit the columns (else unknown, null), latency and cost finite and not negative
        (a cost that is not becomes null; a latency is clamped), the decision bounded."""
        return cls(
            request_id=_text(request_id),
            model_id=_text(model_id),
            task_type=_text(task_type),
            capability_required=_text(capability_required),
            latency_ms=_latency(latency_ms),
            success=bool(success),
            attempt=attempt if type(attempt) is int and 1 <= attempt <= INT_MAX else 1,
            error_kind=None if error_kind is None else _text(error_kind, ERROR_KIND_LENGTH),
            input_tokens=_count(input_tokens),
            output_tokens=_count(output_tokens),
            cost_usd=_cost(cost_usd),
            decision={
                "reason": _text(reason, MAX_REASON),
                "chain": list(chain[:MAX_CHAIN]),  # model ids: validated, no NUL
                "ruleId": None if rule_id is None else _text(rule_id),
                "strategy": _text(strategy),
                "revision": None if revision is None else _text(revision),
                "error": None if error is None else _text(error, 300),
            },
            timestamp=timestamp,
            model_version=None if model_version is None else _text(model_version, 64),
        )


def _text(value: str, limit: int = MAX_TEXT) -> str:
    if "\x00" in value:  # PostgreSQL's text and JSONB refuse NUL
        value = value.replace("\x00", "")
    return value if len(value) <= limit else value[:limit]


def _latency(value: float) -> float:
    if value >= 0:  # False for NaN
        return min(float(value), float(INT_MAX))  # inf too
    return 0.0


def _count(value: int | None) -> int | None:
    return value if type(value) is int and 0 <= value <= INT_MAX else None


def _cost(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _request_uuid(request_id: str) -> uuid.UUID:
    """Callers may pass any request id; a non-UUID one is mapped to a stable UUID."""
    try:
        return uuid.UUID(request_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"grove:request:{request_id}")


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """Rows of a batch the database refused (left out; the others were written), and
    why, as ``{error type: rows}``: no value of a row, nothing of the URL."""

    rows: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    metrics: str | None = None  # why the batch's model_metrics were left out, if they were

    def __str__(self) -> str:
        """``row refused: DataError x1``, and ``; model_metrics refused: ...`` if so."""
        parts = [f"{kind} x{count}" for kind, count in sorted(self.reasons.items())]
        text = f"row refused: {', '.join(parts)}" if parts else ""
        if self.metrics is not None:
            text += ("; " if text else "") + f"model_metrics refused: {self.metrics}"
        return text


def write_batch(connection: Connection, rows: Sequence[Attempt]) -> Refused:
    """Write ``rows`` and their ``model_metrics`` inside the caller's transaction.

    All at once first; if the database refuses that, row by row, each in a savepoint,
    so that a row it refuses is the only one left out. A failure that is not a row's
    (the connection is lost: the savepoint cannot even be rolled back) propagates."""
    if not rows:
        return Refused()
    try:
        with connection.begin_nested():
            _insert(connection, rows)
    except Exception:  # whichever row it was, row by row finds it
        return _one_by_one(connection, rows)
    return Refused()


def _one_by_one(connection: Connection, rows: Sequence[Attempt]) -> Refused:
    kept: list[Attempt] = []
    reasons: collections.Counter[str] = collections.Counter()
    for row in rows:
        try:
            with connection.begin_nested():
                connection.execute(insert(tables.routing_logs), [_log_row(row)])
        except Exception as exc:  # a refused row is left out, and counted
            reasons[type(exc).__name__] += 1
        else:
            kept.append(row)
    metrics = None
    if kept:
        try:
            with connection.begin_nested():
                connection.execute(insert(tables.model_metrics), list(_metrics(kept)))
        except Exception as exc:  # the sums are lost, not the rows they sum up
            metrics = type(exc).__name__
    return Refused(len(rows) - len(kept), dict(reasons), metrics)


def _insert(connection: Connection, rows: Sequence[Attempt]) -> None:
    connection.execute(insert(tables.routing_logs), [_log_row(row) for row in rows])
    connection.execute(insert(tables.model_metrics), list(_metrics(rows)))


def _log_row(row: Attempt) -> dict[str, Any]:
    return {
        "id": ids.uuid7(),
        "request_id": _request_uuid(row.request_id),
        "model_id": row.model_id,
        "task_type": row.task_type,
        "capability_required": row.capability_required,
        "latency_ms": round(row.latency_ms),
        "success": row.success,
        "routing_decision": row.decision,
        "timestamp": row.timestamp,
        "attempt": row.attempt,
        "error_kind": row.error_kind,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost_usd": row.cost_usd,
        "model_version": row.model_version,
    }


def _metrics(rows: Sequence[Attempt]) -> Iterator[dict[str, Any]]:
    """One flush's ``model_metrics`` rows: per model, its attempts, failures, mean and
    largest latency, and the cost of its successful attempts, stamped with its newest
    attempt's time. The attempts themselves are in ``routing_logs``; a row per attempt
    here repeated them and was half of the writer's database work (bench/api.py)."""
    by_model: dict[str, list[Attempt]] = {}
    for row in rows:
        by_model.setdefault(row.model_id, []).append(row)
    for model_id, attempts in by_model.items():
        latencies = [a.latency_ms for a in attempts]
        # a cost the row holds but no sum can (negative, NaN, infinite) is left out
        costs = [c for a in attempts if (c := a.cost_usd) is not None and 0 <= c < math.inf]
        values: dict[str, float] = {
            "attempts": len(attempts),
            "failures": sum(1 for a in attempts if not a.success),
            "latency_ms": sum(latencies) / len(latencies),
            "latency_ms_max": max(latencies),
        }
        if costs:
            values["cost_usd"] = sum(costs)
        newest = max(a.timestamp for a in attempts)
        for kind, value in values.items():
            yield {
                "id": ids.uuid7(),
                "model_id": model_id,
                "metric_type": kind,
                "metric_value": value,
                "timestamp": newest,
            }


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    latency_ms: float
    success: bool
    error_kind: str | None
    cost_usd: float | None
    timestamp: dt.datetime


def attempts(
    connection: Connection, model_id: str, since: dt.datetime, *, limit: int = 200_000
) -> list[Observation]:
    table = tables.routing_logs
    rows = connection.execute(
        select(
            table.c.latency_ms,
            table.c.success,
            table.c.error_kind,
            table.c.cost_usd,
            table.c.timestamp,
        )
        .where(and_(table.c.model_id == model_id, table.c.timestamp >= since))
        .order_by(table.c.timestamp.desc())
        .limit(limit)
    )
    return [
        Observation(
            float(r.latency_ms),
            bool(r.success),
            r.error_kind,
            None if r.cost_usd is None else float(r.cost_usd),
            r.timestamp if r.timestamp.tzinfo else r.timestamp.replace(tzinfo=dt.UTC),
        )
        for r in rows
    ]


def recent(
    connection: Connection,
    *,
    model_id: str | None = None,
    request_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest rows, of one model or one request if given. A request id that is not a
    UUID (a caller's ``x-request-id: trace-42``) is found as it was stored: by the UUID
    made from it."""
    table = tables.routing_logs
    query = select(table).order_by(table.c.timestamp.desc()).limit(limit)
    if model_id is not None:
        query = query.where(table.c.model_id == model_id)
    if request_id is not None:
        query = query.where(table.c.request_id == _request_uuid(request_id))
    return [_row(r) for r in connection.execute(query)]


def _row(r: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "requestId": str(r.request_id),
        "modelId": r.model_id,
        "taskType": r.task_type,
        "capabilityRequired": r.capability_required,
        "latencyMs": r.latency_ms,
        "success": bool(r.success),
        "attempt": r.attempt,
        "errorKind": r.error_kind,
        "costUsd": r.cost_usd,
        "modelVersion": r.model_version,
        "routingDecision": r.routing_decision,
        "timestamp": (
            r.timestamp if r.timestamp.tzinfo else r.timestamp.replace(tzinfo=dt.UTC)
        ).isoformat(),
    }


def of_requests(
    connection: Connection,
    requests: Mapping[str, dt.datetime],
    *,
    within: dt.timedelta = dt.timedelta(minutes=15),
    limit: int = 1_000,
) -> dict[str, list[dict[str, Any]]]:
    """Every logged attempt of each request (request id -> the time of one of its
    attempts), first attempt first, as `recent` gives them: the console shows a decision's
    failover attempts, the other models' too. Request ids have no index: each is looked
    for ``within`` its known time only (the timestamp index), never in the whole log."""
    if not requests:
        return {}
    table = tables.routing_logs
    query = (
        select(table)
        .where(
            or_(
                *(
                    and_(
                        table.c.timestamp >= at - within,
                        table.c.timestamp <= at + within,
                        table.c.request_id == _request_uuid(request_id),
                    )
                    for request_id, at in sorted(requests.items())
                )
            )
        )
        .order_by(table.c.request_id, table.c.attempt, table.c.timestamp)
        .limit(limit)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in connection.execute(query):
        found.setdefault(str(row.request_id), []).append(_row(row))
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class VersionSample:
    """A model version's attempts in a window, as an SLO judges them: ``calls`` counts
    every attempt but those the caller's own request failed (client errors), and the
    latencies are of the successful ones (a fast failure is not a fast model)."""

    calls: int
    successes: int
    latencies_ms: list[float]
    truncated: bool


def version_sample(
    connection: Connection,
    model_id: str,
    version: str,
    since: dt.datetime,
    *,
    limit: int = 100_000,
) -> VersionSample:
    """Counted in the database (any number of calls); the latencies of the newest
    ``limit`` successful ones (``truncated`` when there were more)."""
    table = tables.routing_logs
    where = and_(
        table.c.model_id == model_id,
        table.c.model_version == version,
        table.c.timestamp >= since,
        or_(
            table.c.success.is_(True),
            table.c.error_kind.is_(None),
            # neither the caller's mistake nor the caller leaving mid-stream is the model's
            table.c.error_kind.not_in(("client_error", "cancelled")),
        ),
    )
    counted = connection.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((table.c.success.is_(True), 1), else_=0)), 0),
        ).where(where)
    ).one()
    rows = connection.execute(
        select(table.c.latency_ms)
        .where(and_(where, table.c.success.is_(True)))
        .order_by(table.c.timestamp.desc())
        .limit(limit + 1)
    ).all()
    latencies = [float(row.latency_ms) for row in rows[:limit]]
    return VersionSample(int(counted[0]), int(counted[1]), latencies, len(rows) > limit)


def recent_latencies(
    connection: Connection, since: dt.datetime, *, per_model: int = 1024
) -> dict[tuple[str, str | None], list[float]]:
    """The latest latencies of every model version since ``since`` (newest first), at
    most ``per_model`` each; rows from before migration 0007 have no version (None)."""
    table = tables.routing_logs
    found: dict[tuple[str, str | None], list[float]] = {}
    rows = connection.execute(
        select(table.c.model_id, table.c.model_version, table.c.latency_ms)
        .where(and_(table.c.timestamp >= since, table.c.success.is_(True)))
        .order_by(table.c.timestamp.desc())
        .limit(per_model * 200)
    )
    for row in rows:
        values = found.setdefault((row.model_id, row.model_version), [])
        if len(values) < per_model:
            values.append(float(row.latency_ms))
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class BucketTotals:
    """One model's attempts in one time bucket: the console's cards (sums and counts;
    the mean latency is labelled as a mean, never shown as a percentile)."""

    bucket: int  # 0 is the bucket starting at ``since``
    requests: int
    successes: int
    latency_ms_sum: float
    cost_usd: float


def bucket_totals(
    connection: Connection, since: dt.datetime, bucket_s: int
) -> dict[str, list[BucketTotals]]:
    """Per model, per ``bucket_s`` since ``since``: requests, successes, summed latency and
    cost, grouped by the database (one query for the whole fleet, whatever its size)."""
    table = tables.routing_logs
    seconds: ColumnElement[Any]
    if connection.dialect.name == "sqlite":
        seconds = func.cast(func.strftime("%s", table.c.timestamp), Float)
    else:
        seconds = func.extract("epoch", table.c.timestamp)
    start = since.timestamp()
    bucket = func.floor((seconds - start) / bucket_s)
    rows = connection.execute(
        select(
            table.c.model_id,
            bucket.label("bucket"),
            func.count().label("requests"),
            func.sum(case((table.c.success.is_(True), 1), else_=0)).label("successes"),
            func.sum(table.c.latency_ms).label("latency"),
            func.sum(func.coalesce(table.c.cost_usd, 0.0)).label("cost"),
        )
        .where(table.c.timestamp >= since)
        .group_by(table.c.model_id, bucket)
    )
    found: dict[str, list[BucketTotals]] = {}
    for row in rows:
        found.setdefault(row.model_id, []).append(
            BucketTotals(
                int(row.bucket),
                int(row.requests),
                int(row.successes or 0),
                float(row.latency or 0),
                float(row.cost or 0),
            )
        )
    return found
