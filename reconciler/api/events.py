"""Live events for ``GET /api/events`` (server-sent events).

Lifecycle events come from the ``lifecycle_events`` table (so every replica
streams what any replica applied); reconcile outcomes and failovers of this
process are published in memory. Each subscriber has a bounded queue; a slow
client loses old events rather than holding memory. Open streams are capped per
process and per token, so a caller cannot hold connections without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from reconciler import errors, logs
from reconciler.store import registry
from reconciler.store.engine import Database

KEEPALIVE_S = 15.0
MAX_STREAMS = 100  # per process
MAX_STREAMS_PER_TOKEN = 10
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
    ) -> None:
        self.db = db
        self.poll_s = poll_s
        self.max_streams = max_streams
        self.max_per_owner = max_per_owner
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._owners: Counter[str] = Counter()
        self._last_id: int | None = None

    def admit(self, owner: str) -> Slot:
        """Take a stream slot for ``owner`` now (before the response starts, so a burst of
        requests cannot all pass the check), or raise :class:`TooManyStreams`."""
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
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait({"event": kind, "data": data})

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

    async def stream(self, slot: Slot) -> AsyncIterator[str]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            yield ": connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n"
        finally:
            self._subscribers.discard(queue)
            slot.release()


class TooManyStreams(Exception):
    """No stream slot left for this token or this process."""


class Slot:
    """One admitted stream. Released when the stream ends, or after the response if the
    stream never started (a client gone before the first byte): whichever comes first."""

    def __init__(self, hub: Hub, owner: str) -> None:
        self.hub = hub
        self.owner = owner
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub._release(self.owner)
