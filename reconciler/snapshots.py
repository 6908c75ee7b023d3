"""An immutable in-memory view of reconciled state, swapped atomically when it changes.

Consumers (the router, the API, a watching replica) read ``Snapshots.current``
and get a frozen :class:`Snapshot` without touching the database. A refresh
reads the state serial (one row) and, only when it moved, loads the live
objects in one consistent read and replaces the reference in a single
assignment, so a reader sees the old view or the new one, never a mix.

What wakes a refresh is up to the owner: PostgreSQL NOTIFY through
`store.notifications`, a poll timer, or both.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType

from pydantic import ValidationError

from reconciler import livestate, logs, manifests, telemetry
from reconciler.store import registry
from reconciler.store.engine import Database

log = logging.getLogger("grove.snapshots")


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    serial: int
    revision: str | None
    models: Mapping[str, manifests.AIModel]
    rules: Mapping[str, manifests.RoutingRule]
    loaded_at: float  # time.monotonic() of the swap

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, None, MappingProxyType({}), MappingProxyType({}), 0.0)


class Snapshots:
    def __init__(self, db: Database, *, allow_local_endpoints: bool) -> None:
        self.db = db
        self.allow_local_endpoints = allow_local_endpoints
        self._current = Snapshot.empty()
        self._refreshing = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def refresh(self, *, force: bool = False) -> bool:
        """Load a new snapshot if the state serial moved; return whether it swapped."""
        with self._refreshing, self.db.transaction(snapshot=True) as connection:
            state = registry.read_state(connection)
            if state.state_serial == self._current.serial and not force:
                return False
            objects = registry.load_objects(connection)
        models: dict[str, manifests.AIModel] = {}
        rules: dict[str, manifests.RoutingRule] = {}
        for (kind, ident), live in objects.items():
            try:
                obj = livestate.parsed(live, allow_local_endpoints=self.allow_local_endpoints)
            except ValidationError:
                logs.event(
                    log,
                    "snapshot-skipped-object",
                    level=logging.WARNING,
                    kind=kind,
                    id=ident,
                    reason="live row is not a valid manifest",
                )
                continue
            if isinstance(obj, manifests.AIModel):
                models[ident] = obj
            elif isinstance(obj, manifests.RoutingRule):
                rules[ident] = obj
        self._current = Snapshot(
            serial=state.state_serial,
            revision=state.applied_revision,
            models=MappingProxyType(models),
            rules=MappingProxyType(rules),
            loaded_at=time.monotonic(),
        )
        telemetry.SNAPSHOT_SWAPS.inc()
        telemetry.STATE_SERIAL.set(state.state_serial)
        return True
