"""``GET /api/plan`` computes a plan once per registry state and revision, not per viewer.

A plan of a large fleet takes seconds (12.7 s for 50,001 files): every viewer's
call computing its own let anyone with a read token keep the server's CPU busy.
:class:`PlanPreviews` keeps the last plan under its key (the revision planned,
and the registry's state serial and write counter, which move with every apply
and every write to the live tables), so repeated calls answer from memory;
concurrent callers of a new key share one computation (single flight); and one
computation starts at most every ``min_interval_s`` per server: a caller of a new
key waits for its turn rather than start another.

Called by `api.routes.operations`; runs the computation in a thread, never on the event
loop. A failed computation is not kept: its callers get the error, the next call
tries again (after the interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from reconciler.base import logs

log = logging.getLogger("grove.api")

Key = tuple[str, int, int]  # revision, state serial, write counter
Plan = dict[str, Any]


class PlanPreviews:
    def __init__(
        self,
        min_interval_s: float = 3.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.clock = clock  # injected: tests drive the interval with a fake clock
        self.sleep = sleep
        self.computations = 0
        self._kept: tuple[Key, Plan] | None = None
        self._running: dict[Key, asyncio.Future[Plan]] = {}
        self._turn = asyncio.Lock()  # bound to the loop of its first contended use
        self._last_start = -float("inf")

    async def plan(self, key: Key, compute: Callable[[], Plan]) -> Plan:
        """The plan for ``key``: the one kept, the one being computed, or a new one."""
        kept = self._kept
        if kept is not None and kept[0] == key:
            return kept[1]
        running = self._running.get(key)
        if running is None or running.get_loop() is not asyncio.get_running_loop():
            running = asyncio.ensure_future(self._compute(key, compute))
            self._running[key] = running
            running.add_done_callback(lambda done: self._forget(key, done))
        # shielded: a caller that goes away does not cancel the others' computation
        return await asyncio.shield(running)

    def _forget(self, key: Key, done: asyncio.Future[Plan]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: its callers have it, or nobody waits any more

    async def _compute(self, key: Key, compute: Callable[[], Plan]) -> Plan:
        async with self._turn:  # one computation at a time, each in its turn
            kept = self._kept
            if kept is not None and kept[0] == key:
                return kept[1]
            wait = self._last_start + self.min_interval_s - self.clock()
            if wait > 0:
                await self.sleep(wait)
            self._last_start = started = self.clock()
            plan = await asyncio.to_thread(compute)
            self.computations += 1
            self._kept = (key, plan)
            logs.event(
                log,
                "plan-preview-computed",
                revision=key[0][:12],
                serial=key[1],
                duration_ms=round((self.clock() - started) * 1000, 1),
            )
            return plan
