"""Routing, reconciler and observability endpoints: recommend, execute, logs, health,
status, plan, reconcile, events, metrics, and the git webhook."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.background import BackgroundTask

from reconciler.api import previews, problems
from reconciler.api.bodies import ExecuteBody, ExecuteOut, HealthOut, RecommendOut
from reconciler.api.deps import Operator, Services, ServicesDep, Viewer
from reconciler.api.lean import LeanRoute
from reconciler.api.problems import ApiError
from reconciler.base import telemetry
from reconciler.gitops import reconciling
from reconciler.manifests import kinds as manifests
from reconciler.providers.base import ChatRequest, Message
from reconciler.routing import engine as routing
from reconciler.routing import ranking
from reconciler.store import coordination, registry, routing_logs

router = APIRouter(tags=["routing and operations"])
# The routed call, every request of the data plane: its own router, for the lean handler.
hot = APIRouter(tags=["routing and operations"], route_class=LeanRoute)


@router.get(
    "/api/models/health",
    response_model=HealthOut,
    tags=["models"],
    summary="healthy, or degraded with reasons",
)
async def health(services: ServicesDep, identity: Viewer) -> HealthOut:
    # A reachable registry is read at once; an unreachable one is retried by the
    # snapshot follower every poll interval, not here: a health check must not wait out
    # a connect timeout (10 s to a PostgreSQL that drops packets) on every call.
    if not services.engine.degraded_reasons:
        await asyncio.to_thread(services.engine.refresh)
    _, reasons = services.engine.health()
    # The reconciler's Stalled condition, from the probe /readyz reads (one read a second
    # at most): a router serving a fleet that git can no longer change is not healthy.
    probe = await services.database.result(services.db)
    if probe.readable and probe.stalled is not None:
        stalled = probe.stalled
        said = f"{stalled.get('reason', '')}: {stalled.get('message', '')}"
        reasons.append(f"reconciler stalled, git changes are not applied: {said}"[:500])
    table = services.engine.table()
    return HealthOut(
        status="degraded" if reasons else "healthy",
        reasons=reasons,
        serial=table.serial,
        revision=table.revision,
    )


@router.get(
    "/api/routing/recommend",
    response_model=RecommendOut,
    summary="The routing decision for a task, with every candidate",
)
async def recommend(
    services: ServicesDep,
    identity: Viewer,
    task_type: Annotated[str | None, Query(alias="taskType", max_length=63)] = None,
    capability: Annotated[list[manifests.CapabilityType] | None, Query()] = None,
) -> RecommendOut:
    request = ranking.TaskRequest(task_type=task_type, capabilities=tuple(capability or ()))
    return RecommendOut.of(services.engine.get_routing_decision(request).to_json())


@hot.post(
    "/api/routing/execute",
    response_model=ExecuteOut,
    summary="Route and call the model, failing over along the chain",
)
async def execute(body: ExecuteBody, services: ServicesDep, identity: Operator) -> ExecuteOut:
    request = ranking.TaskRequest(
        task_type=body.task_type, capabilities=tuple(body.capabilities), max_tokens=body.max_tokens
    )
    messages = ((Message("system", body.system),) if body.system else ()) + (
        Message("user", body.prompt),
    )
    chat = ChatRequest(messages, max_tokens=body.max_tokens)
    try:
        result = await services.engine.route_request(request, chat)
    except routing.RoutingFailed as exc:
        if len(exc.attempts) > 1:
            services.hub.publish("failover", {"chain": list(exc.decision.chain), "failed": True})
        raise
    if len(result.attempts) > 1:
        services.hub.publish(
            "failover", {"from": result.attempts[0].model_id, "to": result.model_id}
        )
    response = result.response
    return ExecuteOut(
        model_id=result.model_id,
        text=response.text,
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        cost_usd=response.cost_usd,
        latency_ms=response.latency_ms,
        request_id=result.request_id,
        decision=result.routing_decision.to_json(),
        attempts=[a.to_json() for a in result.attempts],
    )


@router.get(
    "/api/routing/logs", response_model=list[dict[str, Any]], summary="Recent routing log rows"
)
def logs(
    services: ServicesDep,
    identity: Viewer,
    model_id: Annotated[str | None, Query(alias="modelId", max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    services.engine.flush_logs()
    with services.db.transaction() as connection:
        return routing_logs.recent(connection, model_id=model_id, limit=limit)


@router.get("/api/status", response_model=dict[str, Any], summary="Reconciler status")
def status(services: ServicesDep, identity: Viewer) -> dict[str, Any]:
    return services.reconciler().status().to_json()


@router.get("/api/plan", response_model=dict[str, Any], summary="What a reconcile would change")
async def plan(services: ServicesDep, identity: Viewer) -> dict[str, Any]:
    """Computed once per (revision, registry state) and at most every few seconds per
    server, however many viewers ask (`previews.PlanPreviews`)."""
    reconciler, key = await asyncio.to_thread(_plan_key, services)
    return await services.plans.plan(key, functools.partial(_plan_json, reconciler, key[0]))


def _plan_key(services: Services) -> tuple[reconciling.Reconciler, previews.Key]:
    """The revision to plan (fetched at most every few seconds) and the registry's state."""
    reconciler = services.reconciler()
    revision = services.previews.revision(reconciler, services.settings.ref)
    with services.db.transaction() as connection:
        state = registry.read_state(connection)
    return reconciler, (revision, state.state_serial, state.write_counter)


def _plan_json(reconciler: reconciling.Reconciler, revision: str) -> dict[str, Any]:
    outcome = reconciler.plan(revision=revision)
    if outcome.plan is None:
        return {
            "valid": False,
            "diagnostics": [
                {"file": d.file, "line": d.line, "code": d.code, "message": d.message}
                for d in outcome.diagnostics
                if d.is_error
            ],
        }
    return outcome.plan.to_json()


@router.post("/api/reconcile", response_model=dict[str, Any], summary="Run one reconcile cycle")
def reconcile(services: ServicesDep, identity: Operator) -> dict[str, Any]:
    outcome = services.reconciler().reconcile(actor=f"api:{identity.name}")
    services.engine.refresh()
    services.hub.publish("reconcile", {"outcome": outcome.state, "revision": outcome.revision})
    return {
        "outcome": outcome.state,
        "revision": outcome.revision,
        "changes": len(outcome.plan.changes) if outcome.plan else 0,
        "violations": [v.to_json() for v in outcome.plan.violations] if outcome.plan else [],
    }


@router.get(
    "/api/events",
    summary="Server-sent events: lifecycle, reconcile, failover",
    response_class=StreamingResponse,
    responses={429: problems.documented_one("Too many event streams open (per token or server)")},
)
async def events(services: ServicesDep, identity: Viewer) -> StreamingResponse:
    slot = services.hub.admit(identity)  # TooManyStreams: a 429, from problems.ANSWERS
    return StreamingResponse(
        services.hub.stream(slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(slot.release),
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(identity: Viewer) -> PlainTextResponse:
    body, media_type = telemetry.exposition()
    return PlainTextResponse(body, media_type=media_type)


@router.post(
    "/api/hooks/git",
    status_code=202,
    response_model=dict[str, Any],
    summary="Git webhook (HMAC-SHA256 signed); only triggers a refresh",
)
async def git_hook(request: Request, services: ServicesDep) -> dict[str, Any]:
    secret = services.settings.webhook_secret
    if not secret:
        raise ApiError(404, "not-found", "Not found", "the git webhook is not configured")
    body = await request.body()  # bytes only: the signature is checked before any parsing
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    given = request.headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(expected.encode(), given.encode("latin-1", "replace")):
        raise ApiError(401, "bad-signature", "Unauthorized", "the signature does not match")
    with services.db.transaction(write=True) as connection:
        count = coordination.trigger(connection)
    return {"triggered": count}
