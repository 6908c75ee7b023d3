"""``GET /api/events``: lifecycle, reconcile and failover events as server-sent events.

FastAPI's own server-sent events (``fastapi.sse``) encode the events and keep the
stream alive; the machinery behind it (subscribers, slots, revocation) is `api.hub`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from reconciler.api import hub, problems
from reconciler.api.deps import ServicesDep, Viewer
from reconciler.base import endless

router = APIRouter(tags=["routing and operations"])


async def stream_slot(
    request: Request, services: ServicesDep, identity: Viewer
) -> AsyncIterator[hub.Slot]:
    """A stream slot for the caller's token, taken before the answer starts (so a burst
    cannot all pass the check; none left: a 429, from problems.ANSWERS) and given back
    when the answer ends, however it ends. The stream never ends by itself: a server
    that stops ends it (``base.endless``)."""
    slot = services.hub.admit(identity)
    endless.mark(request.scope)
    try:
        yield slot
    finally:
        slot.release()


@router.get(
    "/api/events",
    summary="Server-sent events: lifecycle, reconcile, failover",
    response_class=EventSourceResponse,
    responses={429: problems.documented_one("Too many event streams open (per token or server)")},
)
async def events(
    services: ServicesDep, slot: Annotated[hub.Slot, Depends(stream_slot)]
) -> AsyncIterator[ServerSentEvent]:
    async for event in services.hub.stream(slot):
        yield event
