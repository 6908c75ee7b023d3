"""Live events for ``GET /api/events`` (server-sent events).

Lifecycle events come from the ``lifecycle_events`` table (so every replica
streams what any replica applied); reconcile outcomes and failovers of this
process are published in memory. Each subscriber has a bounded queue; a slow
client loses old events rather than holding memory. Open streams are capped per
process and per token, so a caller cannot hold connections without bound.

A stream lives no longer than its token: every :data:`TOKEN_RECHECK_S` one read
of the registry (off the event loop, past the identity cache) finds the tokens of
open streams that were revoked, and their streams end. While the registry cannot
be read, streams go on (a revocation cannot be seen then). Streams also end when
the server stops (``connections.Connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import ServerSentEvent

from reconciler.base import errors, logs
from reconciler.store import registry, tokens
from reconciler.store.engine import Database

MAX_STREAMS = 100  # per process
MAX_STREAMS_PER_TOKEN = 10
TOKEN_RECHECK_S = 2.0  # a revoked token's streams end within this and one read
# A subscriber's queue: events, or None once its token is revoked.
Queue = asyncio.Queue[dict[str, Any] | None]
log = logging.getLogger("grove.api")


async def pause(stop: asyncio.Event, wake: asyncio.Event | None, timeout_s: float) -> None:
    """Wait ``timeout_s``, or less if ``stop`` or ``wake`` is set; ``wake`` is cleared."""
    waits = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        if wake is not None:
            wake.clear()


class Hub:
    def __init__(
        self,
        db: Database,
        *,
        poll_s: float = 1.0,
        max_streams: int = MAX_STREAMS,
        max_per_owner: int = MAX_STREAMS_PER_TOKEN,
        recheck_s: float = TOKEN_RECHECK_S,
    ) -> None:
        self.db = db
        self.poll_s = poll_s
        self.max_streams = max_streams
        self.max_per_owner = max_per_owner
        self.recheck_s = recheck_s
        self._subscribers: dict[Queue, str] = {}  # queue -> the id of its stream's token
        self._owners: Counter[str] = Counter()
        self._last_id: int | None = None

    def admit(self, identity: tokens.Identity) -> Slot:
        """Take a stream slot for ``identity``'s token now (before the response starts, so a
        burst of requests cannot all pass the check), or raise :class:`TooManyStreams`."""
        owner = identity.token_id
        if self._owners[owner] >= self.max_per_owner:
            raise TooManyStreams(f"this token already has {self.max_per_owner} event streams open")
        if sum(self._owners.values()) >= self.max_streams:
            raise TooManyStreams(f"this server already has {self.max_streams} event streams open")
        self._owners[owner] += 1
        return Slot(self, owner)

    def _release(self, owner: str) -> None:
        self._owners[owner] -= 1
        if self._owners[owner] <= 0:
            del self._owners[owner]

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            _put(queue, {"event": kind, "data": data})

    async def watch_tokens(self, stop: asyncio.Event) -> None:
        """Background task: every ``recheck_s``, until ``stop``, end the streams whose
        token was revoked. One read for all open streams, in a thread, never from the
        identity cache; it ends between reads, never during one."""
        while not stop.is_set():
            open_tokens = set(self._subscribers.values())
            if open_tokens:
                try:
                    revoked = await asyncio.to_thread(self._revoked, open_tokens)
                except errors.GroveError as exc:  # the registry is away: nothing can be seen
                    logs.event(log, "tokens-not-rechecked", level=logging.WARNING, reason=str(exc))
                else:
                    self._end_streams_of(revoked)
            await pause(stop, None, self.recheck_s)

    def _revoked(self, token_ids: set[str]) -> set[str]:
        with self.db.transaction() as connection:
            return tokens.revoked_among(connection, token_ids)

    def _end_streams_of(self, token_ids: set[str]) -> None:
        for queue, token_id in list(self._subscribers.items()):
            if token_id in token_ids:
                del self._subscribers[queue]  # nothing more is published to it
                _put(queue, None)

    async def follow_table(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Background task: turn new lifecycle_events rows into events, until ``stop``;
        every ``poll_s``, and at once when ``wake`` is set (a NOTIFY from an apply).

        It ends between reads, never during one: a read runs in a thread, which a
        cancelled task would leave holding a database connection."""
        while not stop.is_set():
            try:
                rows = await asyncio.to_thread(self._new_rows)
                for row in rows:
                    self.publish("lifecycle", row)
            except errors.GroveError as exc:  # the database may be away; the stream goes on
                logs.event(log, "events-not-read", level=logging.WARNING, reason=str(exc))
            await pause(stop, wake, self.poll_s)

    def _new_rows(self) -> list[dict[str, Any]]:
        with self.db.transaction() as connection:
            if self._last_id is None:
                self._last_id = registry.latest_event_id(connection)
                return []
            rows = registry.events_after(connection, self._last_id)
        if rows:
            self._last_id = rows[-1]["id"]
        return rows

    async def stream(self, slot: Slot) -> AsyncIterator[ServerSentEvent]:
        """The stream's events as they come (FastAPI's server-sent events encode them and
        add a ``: ping`` comment after 15 s of quiet); it ends, with a comment saying so,
        once its token is revoked."""
        queue: Queue = asyncio.Queue(maxsize=1000)
        self._subscribers[queue] = slot.owner
        try:
            yield ServerSentEvent(comment="connected")
            while (item := await queue.get()) is not None:  # None: the token was revoked
                yield ServerSentEvent(event=item["event"], data=item["data"])
            yield ServerSentEvent(comment="token revoked")
        finally:
            self._subscribers.pop(queue, None)
            slot.release()


def _put(queue: Queue, item: dict[str, Any] | None) -> None:
    """Put ``item`` on ``queue``, dropping its oldest event if it is full (a slow client
    loses events, it does not hold memory)."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)


class TooManyStreams(errors.TemporaryError):
    """No stream slot left for this token or this process (one frees when a stream ends)."""


class Slot:
    """One admitted stream. Released when its events end (:meth:`Hub.stream`) or when the
    answer ends (the route's dependency, also when a client left before the first byte),
    whichever comes first; a second release does nothing."""

    def __init__(self, hub: Hub, owner: str) -> None:
        self.hub = hub
        self.owner = owner
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub._release(self.owner)
