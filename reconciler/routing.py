"""The router: pick the model for a task, call it, fail over along the chain, log every attempt.

The service behind ``grove route``, the API's routing endpoints and the Python
API of DESIGN section 9::

    engine = RoutingEngine.open(db="sqlite:///.grove/registry.db")
    decision = engine.get_routing_decision(TaskRequest(task_type="complex-analysis"))
    result = await engine.route_request(request)          # result.model_id
    response = await engine.execute_with_failover(request)

Decisions read an in-memory routing table rebuilt only when the snapshot of
reconciled state changes, so :meth:`get_routing_decision` does no I/O.
Execution walks the decision's chain: a retryable failure (the rule's
``failover.on``) moves to the next model, a client error stops; circuit
breakers make a dead model cost nothing while open. Every attempt is queued
for the routing log and written in batches by a child process
(:mod:`reconciler.store.logwriter`).

Degraded modes: ``ROUTING_OVERRIDE_MODEL`` forces one model; an unexpected
error inside the router falls back to round-robin over enabled models; when
the registry database is unreachable the last snapshot keeps serving (saved
on disk for a restart) and health reports ``degraded``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from reconciler import (
    circuits,
    errors,
    ids,
    logs,
    manifests,
    ranking,
    scoring,
    snapshots,
    telemetry,
)
from reconciler import (
    settings as settings_module,
)
from reconciler.providers import Providers
from reconciler.providers.base import ChatRequest, ChatResponse, FailureKind, ProviderError
from reconciler.settings import Settings
from reconciler.store import migrating, routing_logs
from reconciler.store.engine import Database
from reconciler.store.logwriter import LogWriter

log = logging.getLogger("grove.router")

OVERRIDE_VARIABLE = "ROUTING_OVERRIDE_MODEL"
DEFAULT_FAILOVER = manifests.Failover.model_validate({})  # capability-only requests
T = TypeVar("T")
TaskRequest = ranking.TaskRequest


class NoEligibleModel(errors.PermanentError):
    """No model may serve the request; ``decision`` says why each was excluded."""

    def __init__(self, decision: ranking.RoutingDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptReport:
    model_id: str
    outcome: str  # "success" | a FailureKind value | "skipped"
    latency_ms: float
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "modelId": self.model_id,
            "outcome": self.outcome,
            "latencyMs": round(self.latency_ms, 1),
            "message": self.message,
        }


class RoutingFailed(errors.PermanentError):
    """Every model of the chain failed (or a client error stopped the walk)."""

    def __init__(
        self,
        message: str,
        decision: ranking.RoutingDecision,
        attempts: list[AttemptReport],
        *,
        client_error: bool = False,
    ) -> None:
        super().__init__(message)
        self.decision = decision
        self.attempts = attempts
        self.client_error = client_error


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingResult:
    """What ``route_request`` returns: who answered, the answer, and the decision."""

    model_id: str
    response: ChatResponse
    routing_decision: ranking.RoutingDecision
    attempts: tuple[AttemptReport, ...]
    request_id: str


class LatencyStats:
    """Observed latency of successful calls per model, over a sliding window.

    The p95 is recomputed at most every 16 samples or every second, and samples
    older than the window age out, so a model excluded by ``maxLatencyMs`` gets
    another chance once its slow period is over.
    """

    def __init__(self, *, size: int = 1024, window_s: float = 600.0) -> None:
        self.size = size
        self.window_s = window_s
        # when each sample was taken, and its latency: two deques side by side, so the
        # p95 sorts plain floats (in C) instead of unpacking pairs in Python
        self._times: dict[str, collections.deque[float]] = {}
        self._values: dict[str, collections.deque[float]] = {}
        self._p95: dict[str, tuple[float, float]] = {}  # model -> (p95, computed at)
        self._fresh: dict[str, int] = {}
        self._lock = threading.Lock()
        self.epoch = 0  # bumped whenever a p95 changes: latency orders are cached per epoch

    def seed(self, latencies: dict[str, list[float]]) -> None:
        """Start from what the routing logs observed (a restart keeps its p95s)."""
        for model_id, values in latencies.items():
            for value in reversed(values):  # oldest first
                self.add(model_id, value)

    def add(self, model_id: str, latency_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._times.get(model_id)
            if times is None:
                times = self._times[model_id] = collections.deque(maxlen=self.size)
                self._values[model_id] = collections.deque(maxlen=self.size)
            times.append(now)
            self._values[model_id].append(latency_ms)
            fresh = self._fresh[model_id] = self._fresh.get(model_id, 0) + 1
            if fresh >= 16 or model_id not in self._p95:
                self._compute(model_id, now)

    def _compute(self, model_id: str, now: float) -> None:
        times, values = self._times.get(model_id), self._values.get(model_id)
        while times and values and now - times[0] > self.window_s:
            times.popleft()
            values.popleft()
        self._fresh[model_id] = 0
        if not values:
            if self._p95.pop(model_id, None) is not None:
                self.epoch += 1
            return
        value = scoring.percentile(sorted(values), 0.95)
        previous = self._p95.get(model_id)
        self._p95[model_id] = (value, now)
        if previous is None or previous[0] != value:
            self.epoch += 1

    def p95(self, model_id: str) -> float | None:
        found = self._p95.get(model_id)
        if found is None:
            return None
        now = time.monotonic()
        if now - found[1] > 1.0:
            with self._lock:
                self._compute(model_id, now)
            found = self._p95.get(model_id)
        return found[0] if found else None


class RoutingEngine:
    def __init__(
        self,
        settings: Settings,
        db: Database | None,
        *,
        providers: Providers | None = None,
        breakers: circuits.Breakers | None = None,
        override: str | None = None,
        write_logs: bool = True,
    ) -> None:
        self.settings = settings
        self.db = db
        self.providers = providers or Providers(allow_local=settings.allow_local_endpoints)
        self.breakers = breakers or circuits.Breakers()
        self.stats = LatencyStats()
        self.snapshots = (
            snapshots.Snapshots(db, allow_local_endpoints=settings.allow_local_endpoints)
            if db is not None
            else None
        )
        self.override = override if override is not None else os.environ.get(OVERRIDE_VARIABLE)
        self.cache_path = Path(settings.data_dir) / "snapshot.json"
        self.degraded_reasons: list[str] = []
        self._table: ranking.RoutingTable | None = None
        self._table_of: snapshots.Snapshot | None = None
        self._round_robin = 0
        self._fixed = snapshots.Snapshot.empty()
        self.writer: LogWriter | None = None
        if db is not None and write_logs and db.shared():
            self.writer = LogWriter(db)
            self.writer.start()

    @classmethod
    def open(
        cls, db: str | None = None, *, settings: Settings | None = None, write_logs: bool = True
    ) -> RoutingEngine:
        """An engine on the registry at ``db`` (default: the settings), refreshed once;
        ``write_logs=False`` for one that only decides (no routing-log writer)."""
        config = settings or settings_module.load(db_url=db)
        database = Database(config.db_url, create=False)  # deciding creates no file
        try:
            database.require_file()
            migrating.require_current(database)  # a missing schema is one line, not a crash
        except errors.DatabaseNotReady:
            database.dispose()
            raise
        except errors.TemporaryError:
            pass  # unreachable: serve the saved snapshot, degraded
        engine = cls(config, database, write_logs=write_logs)
        engine.refresh()
        engine.seed_latencies()
        return engine

    def seed_latencies(self, window_s: int = 600) -> None:
        """Load observed latency from the routing logs, for the latency strategy."""
        if self.db is None:
            return
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s)
        try:
            with self.db.transaction() as connection:
                self.stats.seed(routing_logs.recent_latencies(connection, since))
        except errors.GroveError as exc:
            logs.event(log, "latency-not-seeded", level=logging.WARNING, reason=str(exc))

    # ---------------------------------------------------------------- snapshot

    def refresh(self) -> bool:
        """Follow the registry; on failure keep the last snapshot (or the saved one)."""
        if self.snapshots is None:
            return False
        try:
            if not self.degraded_reasons and self._table_of is None:
                assert self.db is not None
                migrating.require_current(self.db)
            swapped = self.snapshots.refresh()
        except (errors.TemporaryError, errors.DatabaseNotReady) as exc:
            self._degrade(f"registry not usable, serving the last snapshot: {exc}")
            return False
        self.degraded_reasons = []
        if swapped:
            self.table()  # build the routing table here, off the request path
            try:
                if self.settings.save_snapshot:  # off for one that only decides (grove route)
                    snapshots.save(self.snapshots.current, self.cache_path)
            except OSError as exc:
                logs.event(log, "snapshot-not-saved", level=logging.WARNING, reason=str(exc))
        return swapped

    def _degrade(self, reason: str) -> None:
        self.degraded_reasons = [reason]
        assert self.snapshots is not None
        if self.snapshots.current.serial < 0:
            saved = snapshots.load_saved(
                self.cache_path, allow_local_endpoints=self.settings.allow_local_endpoints
            )
            if saved is not None:
                self.snapshots.adopt(saved)
                self.table()  # built here, not by the first request
                self.degraded_reasons.append(f"loaded the snapshot saved at serial {saved.serial}")
        logs.event(log, "router-degraded", level=logging.WARNING, reason=reason)

    def use_snapshot(self, snapshot: snapshots.Snapshot) -> None:
        """Serve a given snapshot (tests, embedding without a database)."""
        if self.snapshots is None:
            self._table_of = None
            self._fixed = snapshot
        else:
            self.snapshots.adopt(snapshot)
        self.table()  # built here, not by the first request

    def table(self) -> ranking.RoutingTable:
        current = self.snapshots.current if self.snapshots is not None else self._fixed
        if self._table is None or current is not self._table_of:
            self._table = ranking.RoutingTable(
                current.models, current.rules, revision=current.revision, serial=current.serial
            )
            self._table_of = current
        return self._table

    # ---------------------------------------------------------------- deciding

    def _dynamic(self) -> ranking.Dynamic:
        return ranking.Dynamic(
            blocked=self.breakers.blocked,
            p95_ms=self.stats.p95,
            today=dt.datetime.now(dt.UTC).date(),
            open_circuits=self.breakers.open_ids(),
            stats_epoch=self.stats.epoch,
        )

    def get_routing_decision(self, request: TaskRequest) -> ranking.RoutingDecision:
        """Synchronous, no I/O: the decision from the in-memory table."""
        return self._decide(self.table(), request)

    def _decide(self, table: ranking.RoutingTable, request: TaskRequest) -> ranking.RoutingDecision:
        started = time.perf_counter()
        try:
            forced = table.models.get(self.override) if self.override else None
            if forced is not None and forced.payload.state is manifests.ModelState.ENABLED:
                decision = self._overridden(table, forced)
            else:
                decision = table.decide(request, self._dynamic())
        except ranking.NoRoute:
            raise
        except Exception as exc:  # a router bug must not stop traffic
            self._round_robin += 1
            logs.event(
                log,
                "router-error",
                level=logging.ERROR,
                error=type(exc).__name__,
                message=str(exc)[:200],
            )
            decision = table.round_robin(self._round_robin, f"{type(exc).__name__} in the router")
        telemetry.ROUTING_DECISION_SECONDS.observe(time.perf_counter() - started)
        if self.degraded_reasons:
            decision = dataclasses.replace(decision, degraded=True)
        return decision

    def _overridden(
        self, table: ranking.RoutingTable, model: manifests.AIModel
    ) -> ranking.RoutingDecision:
        return ranking.RoutingDecision(
            model_id=model.id,
            chain=(model.id,),
            rule_id=None,
            task_type=None,
            strategy="override",
            reason=f"override: {OVERRIDE_VARIABLE}={model.id}",
            revision=table.revision,
            serial=table.serial,
            max_attempts=1,
            explain=lambda: (ranking.CandidateReport(model.id, True, 1, None, "override"),),
        )

    # ---------------------------------------------------------------- executing

    async def execute_with_failover(
        self, request: TaskRequest, chat: ChatRequest | None = None
    ) -> ChatResponse:
        return (await self.route_request(request, chat)).response

    async def route_request(
        self, request: TaskRequest, chat: ChatRequest | None = None
    ) -> RoutingResult:
        table = self.table()  # one table for the decision and the calls: a swap may come between
        decision = self._decide(table, request)
        if not decision.chain:
            raise NoEligibleModel(decision)
        chat = chat or ChatRequest.of(request.prompt or "", max_tokens=request.max_tokens)
        request_id = request.request_id or str(ids.uuid7())
        route = table.by_task.get(decision.task_type or "") if decision.task_type else None
        failover = route.failover if route is not None else DEFAULT_FAILOVER
        allowed = frozenset(failover.on)
        attempts: list[AttemptReport] = []
        tried = 0
        for model_id in decision.chain:
            if tried >= decision.max_attempts:
                break
            if not self.breakers.acquire(model_id):
                attempts.append(AttemptReport(model_id, "skipped", 0.0, "circuit open"))
                continue
            tried += 1
            model = table.models[model_id]
            started = time.perf_counter()
            try:
                response = await self.providers.complete(model, chat)
            except ProviderError as exc:
                latency = (time.perf_counter() - started) * 1000
                attempts.append(AttemptReport(model_id, exc.kind.value, latency, str(exc)))
                self._record(request_id, request, decision, model_id, tried, latency, exc, None)
                if exc.kind is FailureKind.CLIENT_ERROR:
                    self.breakers.release(model_id)
                    raise RoutingFailed(
                        f"{model_id} refused the request ({exc}); not failing over",
                        decision,
                        attempts,
                        client_error=True,
                    ) from None
                self.breakers.failure(
                    model_id,
                    cooldown_s=failover.cooldown_s,
                    # A 429 always cools the model down: for Retry-After, or cooldownS;
                    # a 503 with Retry-After for that long; anything else counts to the threshold.
                    retry_after_s=(exc.retry_after_s or float(failover.cooldown_s))
                    if exc.kind is FailureKind.RATE_LIMIT
                    else exc.retry_after_s,
                    why=exc.kind.value,
                )
                telemetry.CIRCUIT_OPEN.labels(model=model_id).set(
                    int(self.breakers.blocked(model_id) is not None)
                )
                if not exc.moves_on(allowed):
                    raise RoutingFailed(
                        f"{model_id} failed ({exc}) and the rule does not fail over on "
                        f"{exc.kind.value}",
                        decision,
                        attempts,
                    ) from None
                telemetry.FAILOVERS.inc()
                continue
            except BaseException:
                self.breakers.release(model_id)
                raise
            if self.breakers.success(model_id):  # a gauge write per call costs, with --workers
                telemetry.CIRCUIT_OPEN.labels(model=model_id).set(0)
            attempts.append(AttemptReport(model_id, "success", response.latency_ms))
            failed = [a for a in attempts if a.outcome not in ("success", "skipped")]
            if failed:
                why = ", ".join(f"{a.model_id}: {a.outcome}" for a in failed)
                decision = dataclasses.replace(
                    decision, model_id=model_id, reason=f"failover from {why}; {decision.reason}"
                )
            self._record(
                request_id, request, decision, model_id, tried, response.latency_ms, None, response
            )
            return RoutingResult(model_id, response, decision, tuple(attempts), request_id)
        names = ", ".join(f"{a.model_id} ({a.outcome})" for a in attempts) or "none"
        raise RoutingFailed(f"every model failed: {names}", decision, attempts)

    def _record(
        self,
        request_id: str,
        request: TaskRequest,
        decision: ranking.RoutingDecision,
        model_id: str,
        attempt: int,
        latency_ms: float,
        error: ProviderError | None,
        response: ChatResponse | None,
    ) -> None:
        if error is None:  # a fast failure is not a fast model
            self.stats.add(model_id, latency_ms)
        outcome = "success" if error is None else error.kind.value
        telemetry.model_requests(model_id, outcome).inc()
        telemetry.model_latency(model_id).observe(latency_ms / 1000)
        if self.writer is None:
            return
        wanted = request.wanted()
        counted = response is not None and response.counted  # else: tokens and cost unknown
        self.writer.put(
            routing_logs.Attempt.of(
                request_id=request_id,
                model_id=model_id,
                task_type=request.task_type or "",
                capability_required=",".join(c.value for c in wanted),
                latency_ms=latency_ms,
                success=error is None,
                attempt=attempt,
                error_kind=None if error is None else error.kind.value,
                input_tokens=response.input_tokens if response and counted else None,
                output_tokens=response.output_tokens if response and counted else None,
                cost_usd=response.cost_usd if response and counted else None,
                reason=decision.reason,
                chain=decision.chain,
                rule_id=decision.rule_id,
                strategy=decision.strategy,
                revision=decision.revision,
                error=None if error is None else str(error),
                timestamp=dt.datetime.now(dt.UTC),
            )
        )

    # ---------------------------------------------------------------- health

    def health(self) -> tuple[str, list[str]]:
        reasons = list(self.degraded_reasons)
        open_circuits = sorted(
            m for m, s in self.breakers.states().items() if s is not circuits.State.CLOSED
        )
        if open_circuits:
            reasons.append("circuits open: " + ", ".join(open_circuits))
        if self.override:
            model = self.table().models.get(self.override)
            if model is None or model.payload.state is not manifests.ModelState.ENABLED:
                reasons.append(
                    f"{OVERRIDE_VARIABLE}={self.override} names no enabled model; routing normally"
                )
            else:
                reasons.append(f"{OVERRIDE_VARIABLE} forces {self.override}")
        table = self.table()
        if not table.enabled:
            reasons.append("no enabled model in the snapshot")
        return ("degraded" if reasons else "healthy", reasons)

    def flush_logs(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    async def aclose(self) -> None:
        await self.providers.aclose()
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
            self.writer = None
        if self.db is not None:
            self.db.dispose()


def run(engine: RoutingEngine, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run routing work from synchronous code (the CLI, scripts): one event loop, whose
    HTTP connections are closed before it ends."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await engine.providers.aclose()

    return asyncio.run(main())
