"""``/console/events``: tells open pages that what they show changed, and
``/static/...``, ``/favicon.ico``: the console's files.

The stream sends ``refresh`` when the router's snapshot moves (an apply by any
replica: the snapshot follows NOTIFY or the file watch; a rollout's step, verdict or
end moves its ``rollout_serial``), when an open rollout is judged again (read with
the plan, `web.rollouts.STAMPS`), when the head's plan or the outage banner
changes; the page's script then fetches its own ``live`` fragment, rendered by the
server like the page. A ``: ping`` comment keeps proxies from closing a quiet stream
(FastAPI's server-sent events add it), and ``X-Accel-Buffering: no`` keeps them from
buffering it. The stream ends when its session does; streams are capped per process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from reconciler.base import endless
from reconciler.store import rollouts as stored_rollouts
from reconciler.web import assets, rollouts
from reconciler.web.console import Console, secured
from reconciler.web.pages import ConsoleDep, NotFound, PageRoute, SignedIn, current_session

router = APIRouter(route_class=PageRoute, include_in_schema=False)
CHECK_S = 0.25  # how often a stream looks for a change (an attribute read, no I/O)
SESSION_RECHECK_S = 5.0
MAX_STREAMS = 200


def _open_rollouts(console: Console) -> list[stored_rollouts.Rollout]:
    with console.db.transaction() as connection:
        return stored_rollouts.open_rollouts(connection)


def _state(console: Console) -> tuple[object, ...]:
    table = console.engine.table()
    last = console.overview.last()
    numbers = console.numbers.last()
    status = None if last is None else last.status
    snapshots = console.engine.snapshots
    return (
        table.serial,
        table.revision,
        None if snapshots is None else snapshots.current.rollout_serial,
        rollouts.STAMPS.last(console.settings.db_url),
        console.outage.since,
        None if numbers is None else numbers[0],
        None
        if status is None
        else (
            status.sync,
            status.health,
            status.desired_revision,
            status.last_applied_revision,
            status.pending_changes,
            status.drifted,
            status.suspended,
            status.last_error,
            # not the conditions' times: they are stamped anew each time status is judged
            tuple((c.type, c.status, c.reason, c.message) for c in status.conditions),
        ),
    )


async def _endless(request: Request) -> None:
    """The live feed never ends by itself: a server that stops ends it (``base.endless``)."""
    endless.mark(request.scope)


@router.get("/console/events", response_class=EventSourceResponse, dependencies=[Depends(_endless)])
async def events(
    request: Request,
    console: ConsoleDep,
    session: SignedIn,
) -> AsyncIterator[ServerSentEvent]:
    if console.streams >= MAX_STREAMS:
        return  # the page falls back to polling
    console.streams += 1
    try:
        yield ServerSentEvent(comment="connected", retry=5000)
        seen = _state(console)
        clock = asyncio.get_running_loop().time
        checked = planned = clock()
        while True:
            await asyncio.sleep(CHECK_S)
            if clock() - checked >= SESSION_RECHECK_S:
                checked = clock()
                if await current_session(request, console) is None:
                    yield ServerSentEvent(event="signed-out", data={"reason": "session ended"})
                    return
            # while a page is open, git is planned again this often (15 s by default)
            if clock() - planned >= console.settings.console_overview_s:
                planned = clock()  # shared by every stream: the caches compute once
                await asyncio.to_thread(console.read, console.overview.get, None)
                await asyncio.to_thread(console.read, console.numbers.get, None)
                await asyncio.to_thread(
                    console.read,
                    lambda: rollouts.STAMPS.get(
                        console.settings.db_url, lambda: _open_rollouts(console)
                    ),
                    None,
                )
            state = _state(console)
            if state != seen:
                seen = state
                yield ServerSentEvent(
                    event="refresh",
                    data={
                        "serial": console.engine.table().serial,
                        "at": dt.datetime.now(dt.UTC).isoformat(),
                    },
                )
    finally:
        console.streams -= 1


@router.get("/static/{name}")
async def static(name: str, v: str = "") -> Response:
    found = assets.FILES.get(name)
    if found is None:
        raise NotFound(f"no file {name!r}")
    cache = "public, max-age=31536000, immutable" if v == found.digest else "no-cache"
    response = Response(found.body, media_type=found.media_type)
    response.headers["ETag"] = f'"{found.digest}"'
    return secured(response, cache=cache)


@router.get("/favicon.ico")
async def favicon() -> Response:
    found = assets.FILES["favicon.svg"]
    return secured(Response(found.body, media_type=found.media_type), cache="public, max-age=86400")
