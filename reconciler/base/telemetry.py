"""Prometheus metrics of the reconciler and the router, ready for ``/metrics``.

Module-level collectors in prometheus-client's default registry; the API
exposes them. Labels never carry ids that could be unbounded or secret.

With ``grove serve --workers N`` the processes of one server share their values
through prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set
before Python starts, see ``reconciler.api.__main__``): counters and histograms
are summed over the processes, so whichever worker answers ``/metrics`` answers
for the whole server; gauges say per gauge how processes combine.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

RECONCILE_CYCLES = Counter(
    "grove_reconcile_cycles_total",
    "Reconcile cycles by outcome (applied, already-applied, in-sync, refused, invalid, skipped, "
    "stalled, stale, lease-lost, error, failed: an unexpected error).",
    ["outcome"],
)
LOOP_ERRORS = Counter(
    "grove_reconcile_loop_errors_total",
    "Unexpected errors the reconcile loop caught and survived, by stage (tick, cycle).",
    ["stage"],
)
RECONCILE_DURATION = Histogram(
    "grove_reconcile_duration_seconds",
    "Duration of one reconcile cycle.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATE_SERIAL = Gauge(
    "grove_registry_state_serial",
    "State serial this process last saw (one series per process with --workers).",
    multiprocess_mode="liveall",
)
LEADER = Gauge(
    "grove_reconcile_leader",
    "1 while this server holds the reconciler lease.",
    multiprocess_mode="livemax",
)
SUSPENDED = Gauge(
    "grove_reconcile_suspended", "1 while applying is suspended.", multiprocess_mode="livemax"
)
BACKOFF = Gauge(
    "grove_reconcile_backoff_seconds",
    "Current backoff after temporary errors.",
    multiprocess_mode="livemax",
)
SNAPSHOT_SWAPS = Counter("grove_snapshot_swaps_total", "Snapshots of reconciled state loaded.")
MODEL_REQUESTS = Counter(
    "grove_model_requests_total", "Calls to models by outcome.", ["model", "outcome"]
)
MODEL_LATENCY = Histogram(
    "grove_model_latency_seconds",
    "Latency of calls to each model.",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@functools.lru_cache(maxsize=4096)
def model_requests(model: str, outcome: str) -> Counter:
    """The labelled child of ``MODEL_REQUESTS``: looked up once per model and outcome
    (``labels()`` checks and locks on every call; a routed call records two)."""
    return MODEL_REQUESTS.labels(model=model, outcome=outcome)


@functools.lru_cache(maxsize=4096)
def model_latency(model: str) -> Histogram:
    """The labelled child of ``MODEL_LATENCY``, as :func:`model_requests`."""
    return MODEL_LATENCY.labels(model=model)


FAILOVERS = Counter("grove_failovers_total", "Calls that moved to the next model of a chain.")
ROUTING_DECISION_SECONDS = Histogram(
    "grove_routing_decision_seconds",
    "Time to make a routing decision (no I/O).",
    buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
)
ROUTING_LOG_ROWS = Counter(
    "grove_routing_log_rows_total",
    "Routing-log rows written, or dropped (buffer full, database refused, writer died).",
    ["outcome"],
)
ROLLOUT_PHASE = Gauge(
    "grove_rollout_phase",
    "1 for the phase a model's latest rollout is in (Running, Successful, Failed, "
    "Inconclusive, Aborted, Superseded), 0 for the others.",
    ["model", "phase"],
    multiprocess_mode="livemax",
)
CANARY_WEIGHT = Gauge(
    "grove_rollout_canary_weight",
    "Percent of a model's calls its canary version gets (0 once the rollout is over).",
    ["model"],
    multiprocess_mode="livemax",
)
ROLLOUT_PHASES = ("Running", "Successful", "Failed", "Inconclusive", "Aborted", "Superseded")


def rollout_gauges(model: str, phase: str, weight: int, open_: bool) -> None:
    for name in ROLLOUT_PHASES:
        ROLLOUT_PHASE.labels(model=model, phase=name).set(int(name == phase))
    CANARY_WEIGHT.labels(model=model).set(weight if open_ else 0)


CIRCUIT_OPEN = Gauge(
    "grove_circuit_open",
    "1 while a model's circuit breaker keeps calls away (in any process of the server).",
    ["model"],
    multiprocess_mode="livemax",
)


def multiprocess_dir() -> str | None:
    """The folder the processes of this server share their values in, or None."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


def exposition() -> tuple[bytes, str]:
    """The Prometheus text of this process, or of every process of the server."""
    if multiprocess_dir() is None:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drop a finished process's live gauges (its counters keep counting in the sums)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
