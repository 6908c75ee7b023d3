"""Model metrics from the routing logs: requests, success rate, latency percentiles, cost, errors.

A service over `store.routing_logs`; used by ``GET /api/models/{id}/metrics``,
the console and the tests of the product brief's performance checks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, computed_field

from reconciler.base import serial
from reconciler.manifests.scoring import percentile
from reconciler.store import routing_logs
from reconciler.store.engine import Database

SERIES_POINTS = 30


def _seconds(window_s: int) -> str:
    return f"{window_s}s"


@dataclasses.dataclass(frozen=True, slots=True)
class ModelMetrics:
    __pydantic_config__ = serial.CAMEL
    _json_order = serial.key_order(
        "modelId", "window", "requests", "successRate", "latency", "costUsd", "errors", "series"
    )

    model_id: str
    window_s: Annotated[int, Field(alias="window"), PlainSerializer(_seconds)]
    requests: int
    successes: Annotated[int, Field(exclude=True)]
    latency_p50_ms: Annotated[float, Field(exclude=True)]
    latency_p95_ms: Annotated[float, Field(exclude=True)]
    latency_p99_ms: Annotated[float, Field(exclude=True)]
    cost_usd: Annotated[float, serial.rounded(8)]
    errors: dict[str, int]
    series: list[dict[str, Any]]

    @computed_field(alias="successRate")  # type: ignore[prop-decorator]
    @property
    def success_rate(self) -> Annotated[float, serial.rounded(6)]:
        return self.successes / self.requests if self.requests else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency(self) -> dict[str, float]:
        """The percentiles as the JSON writes them: ``p50``, ``p95``, ``p99``, rounded."""
        return {
            "p50": round(self.latency_p50_ms, 1),
            "p95": round(self.latency_p95_ms, 1),
            "p99": round(self.latency_p99_ms, 1),
        }

    def to_json(self) -> dict[str, Any]:
        return serial.dump(self)


def _cost(value: float | None) -> float:
    """A stored cost as it may be summed: rows written before answers were checked
    (issue 13) may hold a negative or non-finite one, which counts as 0."""
    return value if value is not None and 0 < value < math.inf else 0.0


def model_metrics(
    db: Database, model_id: str, *, window_s: int, now: dt.datetime | None = None
) -> ModelMetrics:
    end = now or dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(seconds=window_s)
    with db.transaction() as connection:
        rows = routing_logs.attempts(connection, model_id, start)
    latencies = sorted(r.latency_ms for r in rows)
    bucket_s = max(1, window_s // SERIES_POINTS)
    buckets: dict[int, list[routing_logs.Observation]] = {}
    for row in rows:
        index = int((row.timestamp - start).total_seconds() // bucket_s)
        buckets.setdefault(index, []).append(row)
    series = []
    for index in sorted(buckets):
        items = buckets[index]
        ordered = sorted(r.latency_ms for r in items)
        series.append(
            {
                "start": (start + dt.timedelta(seconds=index * bucket_s)).isoformat(),
                "requests": len(items),
                "successRate": round(sum(r.success for r in items) / len(items), 6),
                "p95": round(percentile(ordered, 0.95), 1),
            }
        )
    return ModelMetrics(
        model_id=model_id,
        window_s=window_s,
        requests=len(rows),
        successes=sum(1 for r in rows if r.success),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p95_ms=percentile(latencies, 0.95),
        latency_p99_ms=percentile(latencies, 0.99),
        cost_usd=sum(_cost(r.cost_usd) for r in rows),
        errors=dict(Counter(r.error_kind for r in rows if r.error_kind)),
        series=series,
    )
