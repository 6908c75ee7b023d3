"""Routing logs and model metrics: written in batches, read for aggregation.

The router queues one row per attempt; a background writer calls
:func:`write_batch` with many at once, in one transaction, off the request
path: a ``routing_logs`` row per attempt, and per model a few ``model_metrics``
rows summing up the batch. :func:`attempts` reads one model's window back for
`analysis`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, and_, insert, select

from reconciler import ids
from reconciler.store import tables


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


def _request_uuid(request_id: str) -> uuid.UUID:
    """Callers may pass any request id; a non-UUID one is mapped to a stable UUID."""
    try:
        return uuid.UUID(request_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"grove:request:{request_id}")


def write_batch(connection: Connection, rows: Sequence[Attempt]) -> None:
    if not rows:
        return
    connection.execute(
        insert(tables.routing_logs),
        [
            {
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
            }
            for row in rows
        ],
    )
    connection.execute(insert(tables.model_metrics), list(_metrics(rows)))


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
        costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
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
    connection: Connection, *, model_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    table = tables.routing_logs
    query = select(table).order_by(table.c.timestamp.desc()).limit(limit)
    if model_id is not None:
        query = query.where(table.c.model_id == model_id)
    return [
        {
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
            "routingDecision": r.routing_decision,
            "timestamp": (
                r.timestamp if r.timestamp.tzinfo else r.timestamp.replace(tzinfo=dt.UTC)
            ).isoformat(),
        }
        for r in connection.execute(query)
    ]


def recent_latencies(
    connection: Connection, since: dt.datetime, *, per_model: int = 1024
) -> dict[str, list[float]]:
    """The latest latencies of every model since ``since`` (newest first), at most ``per_model``."""
    table = tables.routing_logs
    found: dict[str, list[float]] = {}
    rows = connection.execute(
        select(table.c.model_id, table.c.latency_ms)
        .where(and_(table.c.timestamp >= since, table.c.success.is_(True)))
        .order_by(table.c.timestamp.desc())
        .limit(per_model * 200)
    )
    for row in rows:
        values = found.setdefault(row.model_id, [])
        if len(values) < per_model:
            values.append(float(row.latency_ms))
    return found
