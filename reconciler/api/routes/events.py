"""``GET /api/events``: lifecycle, reconcile and failover events as server-sent events.

The stream's machinery (subscribers, slots, revocation) is `api.hub`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from reconciler.api import problems
from reconciler.api.deps import ServicesDep, Viewer

router = APIRouter(tags=["routing and operations"])


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
