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
(:mod:`reconciler.runtime.logwriter`).

Circuits and observed latencies are kept per model *version*
(:class:`circuits.ModelVersion`): when a snapshot brings another version of a
model (a new one, or an old one again after a revert), that version starts
with a closed circuit and no latency history, and the state of versions the
snapshot no longer holds is dropped.

Degraded modes: ``ROUTING_OVERRIDE_MODEL`` forces one model (resolved once per
snapshot: one that names no enabled model is ignored, and said so in a warning when
the snapshot is loaded, in every decision's reason and in health); an unexpected
error inside the router falls back to round-robin over enabled models; when
the registry database is unreachable the last snapshot keeps serving (saved
on disk for a restart) and health reports ``degraded``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Collection, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from reconciler.base import diagnostics, errors, ids, logs, telemetry
from reconciler.base import settings as settings_module
from reconciler.base.settings import Settings
from reconciler.manifests import kinds as manifests
from reconciler.providers import Providers
from reconciler.providers.base import (
    ChatRequest,
    ChatResponse,
    FailureKind,
    ProviderError,
)
from reconciler.routing import attempts as attempts_module
from reconciler.routing import canary, circuits, ranking, snapshots, streaming
from reconciler.routing.attempts import CANCELLED, CANCELLED_KIND, CIRCUIT_OPEN
from reconciler.routing.latency import LatencyStats
from reconciler.runtime.logwriter import LogWriter
from reconciler.store import migrating, routing_logs
from reconciler.store.engine import Database

log = logging.getLogger("grove.router")

# The router's words for an attempt and a streamed call (``routing.AttemptReport``,
# ``routing.RoutedStream``), kept in modules of their own
AttemptOutcome = attempts_module.AttemptOutcome
AttemptReport = attempts_module.AttemptReport
RoutedStream = streaming.RoutedStream
StreamBroken = streaming.StreamBroken

OVERRIDE_VARIABLE = "ROUTING_OVERRIDE_MODEL"
DEFAULT_FAILOVER = manifests.Failover.model_validate({})  # capability-only requests
T = TypeVar("T")
TaskRequest = ranking.TaskRequest
Key = circuits.ModelVersion


class NoEligibleModel(errors.PermanentError):
    """No model may serve the request; ``decision`` says why each was excluded."""

    def __init__(self, decision: ranking.RoutingDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class RoutingFailed(errors.PermanentError):
    """Every model of the chain failed (or a client error stopped the walk)."""

    def __init__(
        self,
        message: str,
        decision: ranking.RoutingDecision,
        attempts: list[AttemptReport],
        *,
        client_error: bool = False,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.decision = decision
        self.attempts = attempts
        self.client_error = client_error
        self.field = field  # the request field Grove refused for the model, if that was it


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingResult:
    """What ``route_request`` returns: who answered, the answer, and the decision."""

    model_id: str
    response: ChatResponse
    routing_decision: ranking.RoutingDecision
    attempts: tuple[AttemptReport, ...]
    request_id: str
    version: str | None = None  # the version of the model that answered


@dataclasses.dataclass(frozen=True, slots=True)
class Override:
    """``ROUTING_OVERRIDE_MODEL`` against one routing table: the model it forces, or
    why it is ignored (it names no model of the snapshot, or one that is not enabled)."""

    model: manifests.AIModel | None = None
    problem: str | None = None


NO_OVERRIDE = Override()


def resolve_override(name: str | None, table: ranking.RoutingTable) -> Override:
    if not name:
        return NO_OVERRIDE
    model = table.models.get(name)
    if model is not None and model.payload.state is manifests.ModelState.ENABLED:
        return Override(model=model)
    shown = diagnostics.printable(name)
    why = (
        f"no model {shown} in the registry"
        if model is None
        else f"{shown} is {model.payload.state.value}"
    )
    return Override(problem=f"{OVERRIDE_VARIABLE}={shown} is ignored: {why}; routing normally")


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
        self.providers = providers or Providers(
            allow_local=settings.allow_local_endpoints, stream_idle_s=settings.stream_idle_s
        )
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
        # the snapshot and its routing table, swapped together in one assignment
        self._built: tuple[snapshots.Snapshot, ranking.RoutingTable] | None = None
        self._building = threading.Lock()
        # ROUTING_OVERRIDE_MODEL resolved for a table, once per snapshot, not per decision
        self._override: tuple[ranking.RoutingTable, Override] | None = None
        self._override_said: Override = NO_OVERRIDE  # the last one logged
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
        """Load observed latency from the routing logs, for the latency strategy: each
        row counts for the version that served it (a rollout's stable version too); a
        row from before versions were logged counts for the version live now, and
        versions the snapshot does not serve are left out."""
        if self.db is None:
            return
        since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s)
        live = self.table().versions
        try:
            with self.db.transaction() as connection:
                observed = routing_logs.recent_latencies(connection, since)
        except errors.GroveError as exc:
            logs.event(log, "latency-not-seeded", level=logging.WARNING, reason=str(exc))
            return
        serving = set(self.table().serving)
        seeded: dict[circuits.ModelVersion, list[float]] = {}
        for (model_id, version), values in observed.items():
            if version is None:
                key = live.get(model_id)
            else:
                key = circuits.ModelVersion(model_id, version)
            if key is not None and key in serving:
                seeded.setdefault(key, []).extend(values)
        self.stats.seed(seeded)

    # ---------------------------------------------------------------- snapshot

    def refresh(self) -> bool:
        """Follow the registry; on failure keep the last snapshot (or the saved one)."""
        if self.snapshots is None:
            return False
        try:
            if not self.degraded_reasons and self._built is None:
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
            self._built = None
            self._fixed = snapshot
        else:
            self.snapshots.adopt(snapshot)
        self.table()  # built here, not by the first request

    def _current(self) -> snapshots.Snapshot:
        return self.snapshots.current if self.snapshots is not None else self._fixed

    def table(self) -> ranking.RoutingTable:
        built = self._built
        if built is None or self._current() is not built[0]:
            return self._build()
        return built[1]

    def _build(self) -> ranking.RoutingTable:
        """The routing table of the current snapshot; circuits and latencies of versions it
        no longer holds are dropped. One builder at a time, each reading the snapshot under
        the lock: a table of an older snapshot never replaces a newer one."""
        with self._building:
            current = self._current()
            if self._built is not None and current is self._built[0]:
                return self._built[1]
            splits = {
                ident: canary.Split.of(current.models[ident], held.stable, held.weight)
                for ident, held in current.canaries.items()
                if ident in current.models
            }
            table = ranking.RoutingTable(
                current.models,
                current.rules,
                revision=current.revision,
                serial=current.serial,
                splits=splits,
            )
            live = table.serving
            for gone in self.breakers.retain(live):
                # the model's live version (if any) starts closed; one gauge per model id
                telemetry.CIRCUIT_OPEN.labels(model=gone.model_id).set(0)
            self.stats.retain(live)
            self._announce(self.override_for(table))
            self._built = (current, table)
            return table

    def override_for(self, table: ranking.RoutingTable) -> Override:
        """The override resolved against ``table``, computed once per table."""
        cached = self._override
        if cached is not None and cached[0] is table:
            return cached[1]
        resolved = resolve_override(self.override, table)
        self._override = (table, resolved)
        return resolved

    def override_problem(self) -> str | None:
        """Why ``ROUTING_OVERRIDE_MODEL`` is ignored by the current snapshot, or None."""
        return self.override_for(self.table()).problem

    def _announce(self, override: Override) -> None:
        """Log the override when a snapshot changes what it does (at start, for one)."""
        said = self._override_said
        if override.problem is not None and override.problem != said.problem:
            logs.event(log, "override-ignored", level=logging.WARNING, reason=override.problem)
        elif override.model is not None and (
            said.model is None or said.model.id != override.model.id
        ):
            forced = override.model.id
            reason = f"{OVERRIDE_VARIABLE}={forced} sends every request to {forced}, no failover"
            logs.event(log, "override-active", level=logging.WARNING, reason=reason)
        self._override_said = override

    def live_version(self, model_id: str) -> circuits.ModelVersion:
        """The version of ``model_id`` the snapshot serves: the key of its circuit and of
        its observed latency. KeyError when the snapshot has no such model."""
        return self.table().versions[model_id]

    def retry_after(self, chain: Collection[str]) -> float | None:
        """Seconds until the first model of ``chain`` may be called again (its circuit
        half-opens), or None when none is open: the Retry-After of a 429 or 503."""
        table = self.table()
        waits = [
            wait
            for model_id in chain
            if model_id in table.versions
            and (wait := self.breakers.open_for(table.versions[model_id])) is not None
        ]
        return min(waits) if waits else None

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
            override = self.override_for(table) if self.override else NO_OVERRIDE
            if override.model is not None:
                decision = self._overridden(table, override.model)
            else:  # routed normally; an ignored override says why in every reason
                decision = table.decide(request, self._dynamic(), note=override.problem or "")
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
        table, decision, request_id, failover = self._prepare(request)
        chat = chat or ChatRequest.of(request.prompt or "", max_tokens=request.max_tokens)
        attempts: list[AttemptReport] = []
        for model_id, model, key, tried in self._callable(
            table, decision, request, request_id, attempts
        ):
            started = time.perf_counter()
            try:
                response = await self.providers.complete(model, chat)
            except ProviderError as exc:
                latency = (time.perf_counter() - started) * 1000
                attempts.append(AttemptReport(model_id, exc.kind, latency, str(exc), key.version))
                self.record(request_id, request, decision, key, tried, latency, exc, None)
                self._failed(key, exc, failover, decision, attempts)
                continue
            except BaseException as exc:
                self._interrupted(exc, request_id, request, decision, key, tried, started)
                raise
            self.note_success(key)
            attempts.append(
                AttemptReport(
                    model_id, AttemptOutcome.SUCCESS, response.latency_ms, None, key.version
                )
            )
            decision = attempts_module.after_failover(decision, model_id, attempts)
            self.record(
                request_id, request, decision, key, tried, response.latency_ms, None, response
            )
            return RoutingResult(
                model_id, response, decision, tuple(attempts), request_id, key.version
            )
        names = ", ".join(f"{a.model_id} ({a.outcome})" for a in attempts) or "none"
        raise RoutingFailed(f"every model failed: {names}", decision, attempts)

    async def open_stream(self, request: TaskRequest, chat: ChatRequest) -> streaming.RoutedStream:
        """Route a streamed call: walk the chain as :meth:`route_request` does until a
        model sends its first delta, and return the stream from there. Failover happens
        only here, before anything reaches the caller; a failure after the first delta
        ends the stream (:class:`StreamBroken`) and is that attempt's routing-log row."""
        table, decision, request_id, failover = self._prepare(request)
        attempts: list[AttemptReport] = []
        for model_id, model, key, tried in self._callable(
            table, decision, request, request_id, attempts
        ):
            started = time.perf_counter()
            deltas = self.providers.stream(model, chat)
            try:
                first = await anext(deltas)
            except ProviderError as exc:
                await deltas.aclose()
                latency = (time.perf_counter() - started) * 1000
                attempts.append(AttemptReport(model_id, exc.kind, latency, str(exc), key.version))
                self.record(request_id, request, decision, key, tried, latency, exc, None)
                self._failed(key, exc, failover, decision, attempts)
                continue
            except BaseException as exc:  # the caller left before a word, or worse
                self._interrupted(exc, request_id, request, decision, key, tried, started)
                await deltas.aclose()
                raise
            return streaming.RoutedStream(
                self,
                streaming.StreamAttempt(
                    request_id, request, decision, key, tried, model, started, failover
                ),
                attempts,
                first,
                deltas,
            )
        names = ", ".join(f"{a.model_id} ({a.outcome})" for a in attempts) or "none"
        raise RoutingFailed(f"every model failed: {names}", decision, attempts)

    def _prepare(
        self, request: TaskRequest
    ) -> tuple[ranking.RoutingTable, ranking.RoutingDecision, str, manifests.Failover]:
        """The table (one for the decision and the calls: a swap may come between), the
        decision, the request's id and the failover rules of a routed call."""
        table = self.table()
        decision = self._decide(table, request)
        if not decision.chain:
            raise NoEligibleModel(decision)
        request_id = request.request_id or str(ids.uuid7())
        route = table.by_task.get(decision.task_type or "") if decision.task_type else None
        return table, decision, request_id, route.failover if route else DEFAULT_FAILOVER

    def _callable(
        self,
        table: ranking.RoutingTable,
        decision: ranking.RoutingDecision,
        request: TaskRequest,
        request_id: str,
        attempts: list[AttemptReport],
    ) -> Iterator[tuple[str, manifests.AIModel, circuits.ModelVersion, int]]:
        """The attempts the chain allows, up to its ``max_attempts``: each version whose
        circuit lets a call through (its permission taken), numbered from 1. One its
        circuit keeps out is reported as skipped."""
        tried = 0
        splits = table.splits
        for model_id, model, key in _versions(decision.chain, table, splits, request_id):
            if tried >= decision.max_attempts:
                return
            if not self.breakers.acquire(key):
                attempts.append(
                    AttemptReport(
                        model_id, AttemptOutcome.SKIPPED, 0.0, "circuit open", key.version
                    )
                )
                if splits and model_id in splits and key == table.versions[model_id]:
                    # a canary its own circuit keeps out still counts against it: a
                    # version that fails every call must not look like one without traffic
                    self.record(
                        request_id, request, decision, key, tried + 1, 0.0, CIRCUIT_OPEN, None
                    )
                continue
            tried += 1
            yield model_id, model, key, tried

    def _interrupted(
        self,
        exc: BaseException,
        request_id: str,
        request: TaskRequest,
        decision: ranking.RoutingDecision,
        key: circuits.ModelVersion,
        tried: int,
        started: float,
    ) -> None:
        """An attempt stopped by something other than the model: its circuit's probe is
        freed; a cancelled one (the caller left) is logged ``cancelled``."""
        self.breakers.release(key)
        if isinstance(exc, asyncio.CancelledError):
            waited = attempts_module.since(started)
            self.record(request_id, request, decision, key, tried, waited, CANCELLED, None)

    def note_success(self, key: circuits.ModelVersion) -> None:
        if self.breakers.success(key):  # a gauge write per call costs, with --workers
            telemetry.CIRCUIT_OPEN.labels(model=key.model_id).set(0)

    def _failed(
        self,
        key: circuits.ModelVersion,
        exc: ProviderError,
        failover: manifests.Failover,
        decision: ranking.RoutingDecision,
        attempts: list[AttemptReport],
    ) -> None:
        """After a failed attempt (already in ``attempts`` and logged): a client error
        stops the walk, anything else counts against the version's circuit, and a
        failure the rule does not fail over on stops it too; else the walk goes on."""
        model_id = key.model_id
        if exc.kind is FailureKind.CLIENT_ERROR:
            self.breakers.release(key)
            raise RoutingFailed(
                f"{model_id} refused the request ({exc}); not failing over",
                decision,
                attempts,
                client_error=True,
                field=exc.field,
            ) from None
        self.note_failure(key, exc, failover)
        if not exc.moves_on(frozenset(failover.on)):
            raise RoutingFailed(
                f"{model_id} failed ({exc}) and the rule does not fail over on {exc.kind.value}",
                decision,
                attempts,
            ) from None
        telemetry.FAILOVERS.inc()

    def note_failure(
        self, key: circuits.ModelVersion, exc: ProviderError, failover: manifests.Failover
    ) -> None:
        counted = self.breakers.failure(
            key,
            cooldown_s=failover.cooldown_s,
            # A 429 always cools the model down: for Retry-After, or cooldownS;
            # a 503 with Retry-After for that long; anything else counts to the threshold.
            retry_after_s=(exc.retry_after_s or float(failover.cooldown_s))
            if exc.kind is FailureKind.RATE_LIMIT
            else exc.retry_after_s,
            why=exc.kind.value,
        )
        if counted:  # not for a version a new snapshot has replaced meanwhile
            telemetry.CIRCUIT_OPEN.labels(model=key.model_id).set(
                int(self.breakers.blocked(key) is not None)
            )

    def record(
        self,
        request_id: str,
        request: TaskRequest,
        decision: ranking.RoutingDecision,
        key: circuits.ModelVersion,
        attempt: int,
        latency_ms: float,
        error: ProviderError | None,
        response: ChatResponse | None,
    ) -> None:
        model_id = key.model_id
        if error is None:  # a fast failure is not a fast model
            self.stats.add(key, latency_ms)
        outcome = AttemptOutcome.SUCCESS if error is None else error.kind
        if error is CANCELLED:
            telemetry.model_requests(model_id, CANCELLED_KIND).inc()
        elif error is not CIRCUIT_OPEN:  # not a call: no request counted, no latency
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
                error_kind=None
                if error is None
                else "circuit_open"
                if error is CIRCUIT_OPEN
                else CANCELLED_KIND
                if error is CANCELLED
                else error.kind.value,
                input_tokens=response.input_tokens if response and counted else None,
                output_tokens=response.output_tokens if response and counted else None,
                cost_usd=response.cost_usd if response and counted else None,
                reason=decision.reason,
                chain=decision.chain,
                rule_id=decision.rule_id,
                strategy=decision.strategy,
                revision=decision.revision,
                error=None if error is None else str(error),
                # when the call was routed: an analysis window holds the calls made in it
                timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=latency_ms),
                model_version=key.version,
            )
        )

    # ---------------------------------------------------------------- health

    def health(self) -> tuple[str, list[str]]:
        reasons = list(self.degraded_reasons)
        open_circuits = sorted(
            k.label() for k, s in self.breakers.states().items() if s is not circuits.State.CLOSED
        )
        if open_circuits:
            reasons.append("circuits open: " + ", ".join(open_circuits))
        table = self.table()
        override = self.override_for(table)
        if override.problem is not None:
            reasons.append(override.problem)
        elif override.model is not None:
            reasons.append(f"{OVERRIDE_VARIABLE} forces {override.model.id}")
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


def _versions(
    chain: tuple[str, ...],
    table: ranking.RoutingTable,
    splits: Mapping[str, canary.Split],
    request_id: str,
) -> Iterator[tuple[str, manifests.AIModel, circuits.ModelVersion]]:
    """The attempts a chain allows, in order: each model's live version, or while a
    rollout splits it, the version this request id hashes to and then the other one."""
    for model_id in chain:
        split = splits.get(model_id) if splits else None
        if split is None:
            yield model_id, table.models[model_id], table.versions[model_id]
            continue
        for model, key in split.order(request_id):
            yield model_id, model, key


def run(engine: RoutingEngine, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run routing work from synchronous code (the CLI, scripts): one event loop, whose
    HTTP connections are closed before it ends."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await engine.providers.aclose()

    return asyncio.run(main())
