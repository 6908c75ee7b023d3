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
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import Field, ValidationError, computed_field

from reconciler.base import logs, serial, telemetry
from reconciler.manifests import kinds as manifests
from reconciler.planning import livestate
from reconciler.store import registry, rollouts
from reconciler.store.engine import Database

log = logging.getLogger("grove.snapshots")


@dataclasses.dataclass(frozen=True, slots=True)
class Canary:
    """An open rollout's split of a model's calls: the stable version (its content from
    the registry's version history, its state as live now) and the canary's weight."""

    stable: manifests.AIModel
    weight: int

    def to_json(self) -> dict[str, Any]:
        return {"weight": self.weight, "stable": manifests.to_document(self.stable)}


def _no_canaries() -> Mapping[str, Canary]:
    return MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    __pydantic_config__ = serial.CAMEL
    _json_order = serial.key_order("serial", "revision", "objects", "rolloutSerial", "canaries")

    serial: int
    revision: str | None
    models: Annotated[Mapping[str, manifests.AIModel], Field(exclude=True)]
    rules: Annotated[Mapping[str, manifests.RoutingRule], Field(exclude=True)]
    loaded_at: Annotated[float, Field(exclude=True)]  # time.monotonic() of the swap
    rollout_serial: int = 0
    canaries: Annotated[Mapping[str, Canary], Field(exclude=True)] = dataclasses.field(
        default_factory=_no_canaries
    )

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(-1, None, MappingProxyType({}), MappingProxyType({}), 0.0)

    @computed_field(alias="canaries")  # type: ignore[prop-decorator]
    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        """The open rollouts' splits, saved with the snapshot: a restart without the
        database still keeps a failed canary out of traffic."""
        return {ident: canary.to_json() for ident, canary in self.canaries.items()}

    @computed_field(alias="objects")  # type: ignore[prop-decorator]
    @property
    def documents(self) -> list[dict[str, Any]]:
        """Every live object as its document: the models, then the rules."""
        return [manifests.to_document(m) for m in self.models.values()] + [
            manifests.to_document(r) for r in self.rules.values()
        ]

    def to_json(self) -> dict[str, object]:
        return serial.dump(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, allow_local_endpoints: bool) -> Snapshot:
        """The one reader not declared through `base.serial`: each document is validated
        as a manifest with the endpoint policy of this run, split by kind into read-only
        maps, and ``loaded_at`` is now, none of which is a field's shape."""
        models: dict[str, manifests.AIModel] = {}
        rules: dict[str, manifests.RoutingRule] = {}
        for document in data["objects"]:
            obj = manifests.parse_document(document, allow_local_endpoints=allow_local_endpoints)
            if isinstance(obj, manifests.AIModel):
                models[obj.id] = obj
            else:
                rules[obj.id] = obj
        canaries: dict[str, Canary] = {}
        for ident, split in (data.get("canaries") or {}).items():
            stable = manifests.parse_document(
                split["stable"], allow_local_endpoints=allow_local_endpoints
            )
            if isinstance(stable, manifests.AIModel) and ident in models:
                canaries[ident] = Canary(stable, int(split["weight"]))
        return cls(
            int(data["serial"]),
            data.get("revision"),
            MappingProxyType(models),
            MappingProxyType(rules),
            time.monotonic(),
            int(data.get("rolloutSerial", 0)),
            MappingProxyType(canaries),
        )


def save(snapshot: Snapshot, path: Path) -> None:
    """Write the snapshot for a restart without the database (atomically: temp + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(snapshot.to_json()), encoding="utf-8")
    temporary.replace(path)


def load_saved(path: Path, *, allow_local_endpoints: bool) -> Snapshot | None:
    """The snapshot a previous run saved, or None when there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Snapshot.from_json(data, allow_local_endpoints=allow_local_endpoints)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Snapshots:
    """The current snapshot of a registry, and its refresh."""

    def __init__(self, db: Database, *, allow_local_endpoints: bool) -> None:
        self.db = db
        self.allow_local_endpoints = allow_local_endpoints
        self._current = Snapshot.empty()
        self._refreshing = threading.Lock()

    @property
    def current(self) -> Snapshot:
        return self._current

    def _canaries(
        self, splits: Mapping[str, rollouts.Route], models: Mapping[str, manifests.AIModel]
    ) -> dict[str, Canary]:
        """Each split's stable version as a model, its state as the live one's (an
        enable or disable during the rollout holds for both versions)."""
        found: dict[str, Canary] = {}
        for ident, split in splits.items():
            live = models.get(ident)
            if live is None:
                continue
            document = split.stable_document
            payload = {**document["payload"], "state": live.payload.state.value}
            try:
                stable = manifests.parse_document(
                    {"meta": document["meta"], "payload": payload},
                    allow_local_endpoints=self.allow_local_endpoints,
                )
            except ValidationError:
                logs.event(
                    log,
                    "canary-stable-skipped",
                    level=logging.WARNING,
                    id=ident,
                    version=split.stable_version,
                    reason="the stable version's content is not a valid manifest",
                )
                continue
            if isinstance(stable, manifests.AIModel):
                found[ident] = Canary(stable, split.weight)
        return found

    def adopt(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` (a saved one) until the database answers again."""
        self._current = snapshot

    def refresh(self, *, force: bool = False) -> bool:
        """Load a new snapshot if the state serial moved; return whether it swapped."""
        with self._refreshing, self.db.transaction(snapshot=True) as connection:
            state = registry.read_state(connection)
            rollout_serial = rollouts.rollout_serial(connection)
            current = self._current
            if (
                state.state_serial == current.serial
                and rollout_serial == current.rollout_serial
                and not force
            ):
                return False
            if 0 <= state.state_serial < self._current.serial:
                # A serial only grows: the registry was restored from an older backup (or
                # replaced). Serve what it holds, and say so: the loop re-applies git.
                logs.event(
                    log,
                    "registry-went-back",
                    level=logging.WARNING,
                    serial=state.state_serial,
                    was=self._current.serial,
                )
            objects = registry.load_objects(connection)
            splits = rollouts.routes(
                connection,
                {
                    ident: live.version
                    for (kind, ident), live in objects.items()
                    if kind == manifests.KIND_MODEL
                },
            )
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
            rollout_serial=rollout_serial,
            canaries=MappingProxyType(self._canaries(splits, models)),
        )
        telemetry.SNAPSHOT_SWAPS.inc()
        telemetry.STATE_SERIAL.set(state.state_serial)
        return True
