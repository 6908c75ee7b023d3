"""``GET /healthz`` and ``GET /readyz``: liveness and readiness probes, without a token.

For Kubernetes (docs/operations.md has the probe YAML) and load balancers.
``/healthz`` says the process answers and does nothing else. ``/readyz`` checks
that this process can serve: the registry database answers (one cheap read,
off the event loop, at most one at a time and reused for a second, with a 2 s
timeout: `deps.DatabaseProbe`), a snapshot is loaded, the reconcile loop's
thread is alive where it runs in this process, and reports the reconciler's
``Stalled`` condition. Both answer ``{"status": ..., "checks": {...}}``, 200 or
503.

A ``fail`` check makes ``/readyz`` answer 503; a ``warn`` (a Stalled
reconciler, a router serving its last snapshot) leaves it 200 with status
``degraded``: a bad commit must not take every replica out of its load
balancer. ``?exclude=database`` (repeatable, as kube-apiserver's) keeps a check
in the answer without letting it fail readiness: a replica that routes from
its snapshot through a database outage then stays in its load balancer.

Never reads a token, never shows a secret, a DSN, a host or a path: the
database check says what is wrong in the store's words (`store.engine`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from reconciler.api.deps import Services, ServicesDep

router = APIRouter(tags=["probes"])

CheckStatus = Literal["ok", "warn", "fail", "skip"]
CHECKS = ("database", "snapshot", "reconcileLoop", "reconciler")


class Check(BaseModel):
    status: CheckStatus
    detail: str = ""


class ProbeOut(BaseModel):
    """``status``: ``ok``, ``degraded`` (a check warns) or ``unavailable`` (one fails)."""

    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, Check]


@router.get(
    "/healthz",
    response_model=ProbeOut,
    summary="Liveness: the process answers (no token)",
)
async def healthz() -> ProbeOut:
    return ProbeOut(status="ok", checks={"process": Check(status="ok", detail="answering")})


@router.get(
    "/readyz",
    response_model=ProbeOut,
    summary="Readiness: database, snapshot, reconcile loop, Stalled (no token)",
    responses={503: {"model": ProbeOut, "description": "A check failed: not ready"}},
)
async def readyz(
    services: ServicesDep,
    exclude: Annotated[list[str], Query(max_length=len(CHECKS))] = [],  # noqa: B006 - FastAPI copies it
) -> JSONResponse:
    checks = await _checks(services)
    counted = [check.status for name, check in checks.items() if name not in exclude]
    if "fail" in counted:
        status, code = "unavailable", 503
    else:
        status, code = ("degraded" if "warn" in counted else "ok"), 200
    body = ProbeOut(status=status, checks=checks)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(), status_code=code, headers={"Cache-Control": "no-store"})


async def _checks(services: Services) -> dict[str, Check]:
    probe = await services.database.result(services.db)
    checks = {
        "database": Check(status="ok", detail=f"readable at state serial {probe.state_serial}")
        if probe.readable
        else Check(status="fail", detail=probe.reason),
        "snapshot": _snapshot(services),
        "reconcileLoop": _loop(services),
    }
    if not probe.readable:
        checks["reconciler"] = Check(status="skip", detail="unknown: the registry is not readable")
    elif probe.stalled is not None:
        said = f"{probe.stalled.get('reason', '')}: {probe.stalled.get('message', '')}"
        checks["reconciler"] = Check(status="warn", detail=f"Stalled: {said}"[:500])
    else:
        checks["reconciler"] = Check(status="ok", detail="not stalled")
    return checks


def _snapshot(services: Services) -> Check:
    table = services.engine.table()
    if table.serial < 0:
        return Check(status="fail", detail="no snapshot of the registry is loaded yet")
    revision = (table.revision or "none")[:12]
    detail = f"serial {table.serial}, revision {revision}, {len(table.models)} model(s)"
    degraded = services.engine.degraded_reasons
    if degraded:
        return Check(status="warn", detail=f"{detail}; {'; '.join(degraded)}"[:500])
    return Check(status="ok", detail=detail)


def _loop(services: Services) -> Check:
    thread = services.loop
    if thread is None:
        return Check(status="skip", detail="the reconcile loop does not run in this process")
    if thread.is_alive():
        return Check(status="ok", detail="running")
    return Check(status="fail", detail="the reconcile loop's thread has stopped")
