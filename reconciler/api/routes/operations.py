"""The reconciler's endpoints: status, plan, reconcile, Prometheus metrics, the git webhook."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from reconciler.api import previews
from reconciler.api.deps import Operator, Services, ServicesDep, Viewer
from reconciler.api.problems import ApiError
from reconciler.base import telemetry
from reconciler.gitops import reconciling
from reconciler.store import coordination, registry

router = APIRouter(tags=["routing and operations"])


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
