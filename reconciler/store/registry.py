"""Queries on the registry: live state in, a plan's changes out, history and flags.

Every function takes an open connection; the caller decides the transaction
(see `engine.Database.transaction`). Results are plain data from `livestate`
and dicts. The apply path (:func:`apply_plan`) takes the cluster-wide apply
lock first and then compare-and-sets the state row, so two reconcilers can
never both apply and a crash leaves the old state or the new one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Select, Table, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from reconciler.base import errors
from reconciler.manifests import kinds as manifests
from reconciler.planning import rollbacks
from reconciler.planning.livestate import LiveObject, LiveState
from reconciler.planning.plans import Change, ChangeKind, Plan
from reconciler.store import coordination, failpoints, rollouts, tables
from reconciler.store import events as written

APPLY_LOCK_KEY = 0x67726F7665  # "grove": the advisory lock id on PostgreSQL
NOTIFY_CHANNEL = written.NOTIFY_CHANNEL
LOCK_TIMEOUT = "30s"

_EVENTS = {
    (manifests.KIND_MODEL, ChangeKind.CREATE): "model_registered",
    (manifests.KIND_MODEL, ChangeKind.VERSION): "model_versioned",
    (manifests.KIND_MODEL, ChangeKind.ENABLE): "model_enabled",
    (manifests.KIND_MODEL, ChangeKind.DISABLE): "model_disabled",
    (manifests.KIND_MODEL, ChangeKind.RETIRE): "model_retired",
    (manifests.KIND_MODEL, ChangeKind.REMOVE): "model_removed",
    (manifests.KIND_RULE, ChangeKind.CREATE): "rule_created",
    (manifests.KIND_RULE, ChangeKind.UPDATE): "rule_updated",
    (manifests.KIND_RULE, ChangeKind.ENABLE): "rule_updated",
    (manifests.KIND_RULE, ChangeKind.DISABLE): "rule_updated",
    (manifests.KIND_RULE, ChangeKind.REMOVE): "rule_removed",
}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------- reading


def load_objects(connection: Connection) -> dict[tuple[str, str], LiveObject]:
    """Every live model and rule (what the router serves from)."""
    objects: dict[tuple[str, str], LiveObject] = {}
    for kind, table in tables.LIVE_TABLES.items():
        for row in connection.execute(_live_rows(table)):
            objects[(kind, row.object_id)] = _live_object(kind, row)
    return objects


def load_object(connection: Connection, kind: str, ident: str) -> LiveObject | None:
    """One live object, or None: what a write answers with, without reading the fleet."""
    table = tables.LIVE_TABLES[kind]
    row = connection.execute(_live_rows(table).where(table.c.object_id == ident)).first()
    return None if row is None else _live_object(kind, row)


def _live_rows(table: Table) -> Select[Any]:
    """The columns of a live table a `LiveObject` is made of."""
    c = table.c
    return select(
        c.object_id, c.version, c.meta, c.payload, c.applied_hash, c.source_path, c.source_blob
    )


def _live_object(kind: str, row: Any) -> LiveObject:
    return LiveObject(
        kind=kind,
        id=row.object_id,
        version=row.version,
        meta=row.meta,
        payload=row.payload,
        applied_hash=row.applied_hash,
        source_path=row.source_path,
        source_blob=row.source_blob,
    )


def load_live(connection: Connection) -> LiveState:
    """Everything the planner needs to know about the registry, in one snapshot."""
    objects = load_objects(connection)
    versions = {
        (row.object_kind, row.object_id, row.version): row.content_hash
        for row in connection.execute(
            select(
                tables.object_versions.c.object_kind,
                tables.object_versions.c.object_id,
                tables.object_versions.c.version,
                tables.object_versions.c.content_hash,
            )
        )
    }
    protections = {
        (row.object_kind, row.object_id): row.reason
        for row in connection.execute(
            select(
                tables.protections.c.object_kind,
                tables.protections.c.object_id,
                tables.protections.c.reason,
            )
        )
    }
    quarantined = frozenset(
        (row.object_kind, row.object_id, row.version)
        for row in connection.execute(
            select(
                tables.quarantined_versions.c.object_kind,
                tables.quarantined_versions.c.object_id,
                tables.quarantined_versions.c.version,
            )
        )
    )
    state = read_state(connection)
    return LiveState(
        objects=objects,
        versions=versions,
        protections=protections,
        quarantined=quarantined,
        **_state_fields(state),
    )


def load_keys(connection: Connection, keys: Iterable[tuple[str, str]]) -> LiveState:
    """The live state of some objects only (their rows, versions, protections and
    quarantined versions) with the count of all live objects in ``total``: what a plan
    of a change to those objects needs, at a cost that follows the change."""
    wanted: dict[str, list[str]] = {kind: [] for kind in tables.LIVE_TABLES}
    for kind, ident in keys:
        wanted[kind].append(ident)
    objects: dict[tuple[str, str], LiveObject] = {}
    versions: dict[tuple[str, str, str], str] = {}
    protections: dict[tuple[str, str], str] = {}
    quarantined: set[tuple[str, str, str]] = set()
    total = 0
    history, protected, held = (
        tables.object_versions,
        tables.protections,
        tables.quarantined_versions,
    )
    for kind, table in tables.LIVE_TABLES.items():
        total += int(connection.execute(select(func.count()).select_from(table)).scalar_one())
        idents = sorted(set(wanted[kind]))
        for start in range(0, len(idents), 500):
            chunk = idents[start : start + 500]
            for row in connection.execute(_live_rows(table).where(table.c.object_id.in_(chunk))):
                objects[(kind, row.object_id)] = _live_object(kind, row)
            for found in connection.execute(
                select(history.c.object_id, history.c.version, history.c.content_hash).where(
                    and_(history.c.object_kind == kind, history.c.object_id.in_(chunk))
                )
            ):
                versions[(kind, found.object_id, found.version)] = found.content_hash
            for guard in connection.execute(
                select(protected.c.object_id, protected.c.reason).where(
                    and_(protected.c.object_kind == kind, protected.c.object_id.in_(chunk))
                )
            ):
                protections[(kind, guard.object_id)] = guard.reason
            for quarantine in connection.execute(
                select(held.c.object_id, held.c.version).where(
                    and_(held.c.object_kind == kind, held.c.object_id.in_(chunk))
                )
            ):
                quarantined.add((kind, quarantine.object_id, quarantine.version))
    state = read_state(connection)
    return LiveState(
        objects=objects,
        versions=versions,
        protections=protections,
        quarantined=frozenset(quarantined),
        **_state_fields(state),
        total=total,
    )


def _state_fields(state: StateRow) -> dict[str, Any]:
    """The fields of a `LiveState` that come from the reconciler's state row."""
    return {
        "applied_revision": state.applied_revision,
        "applied_tree": state.applied_tree,
        "state_serial": state.state_serial,
        "attempted_revision": state.attempted_revision,
        "suspended": state.suspended,
        "last_error": state.last_error,
        "conditions": dict(state.conditions or {}),
        "untouched": state.untouched_since_apply,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class StateRow:
    applied_revision: str | None
    applied_tree: str | None
    attempted_revision: str | None
    state_serial: int
    last_attempt_at: dt.datetime | None
    last_applied_at: dt.datetime | None
    last_error: str | None
    conditions: dict[str, Any]
    suspended: bool
    write_counter: int = 0
    applied_write_counter: int | None = None

    @property
    def untouched_since_apply(self) -> bool:
        """Nobody has written to the live tables since the last apply (so no drift)."""
        return self.applied_write_counter == self.write_counter


def read_state(connection: Connection) -> StateRow:
    row = connection.execute(
        select(tables.reconciler_state).where(tables.reconciler_state.c.id == 1)
    ).one()
    return StateRow(
        applied_revision=row.applied_revision,
        applied_tree=row.applied_tree,
        attempted_revision=row.attempted_revision,
        state_serial=int(row.state_serial),
        last_attempt_at=row.last_attempt_at,
        last_applied_at=row.last_applied_at,
        last_error=row.last_error,
        conditions=dict(row.conditions or {}),
        suspended=bool(row.suspended),
        write_counter=int(row.write_counter),
        applied_write_counter=row.applied_write_counter,
    )


state_serial = written.state_serial


def revision_history(connection: Connection, limit: int = 50) -> list[dict[str, Any]]:
    table = tables.revisions
    rows = connection.execute(select(table).order_by(table.c.id.desc()).limit(limit))
    return [
        {
            "revision": row.revision,
            "previousRevision": row.previous_revision,
            "stateSerial": int(row.state_serial),
            "changes": row.changes,
            "summary": row.summary,
            "forced": row.forced,
            "actor": row.actor,
            "appliedAt": _iso(row.applied_at),
        }
        for row in rows
    ]


def events(connection: Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The latest lifecycle events, newest first."""
    table = tables.lifecycle_events
    rows = connection.execute(select(table).order_by(table.c.id.desc()).limit(limit))
    return [_event(row) for row in rows]


def _event(row: Any) -> dict[str, Any]:
    return {
        "type": row.event_type,
        "objectKind": row.object_kind,
        "objectId": row.object_id,
        "versionFrom": row.version_from,
        "versionTo": row.version_to,
        "revision": row.revision,
        "stateSerial": int(row.state_serial),
        "forced": bool(row.forced),
        "actor": row.actor,
        "details": row.details,
        "timestamp": _iso(row.timestamp),
    }


def version_history(connection: Connection, kind: str, ident: str) -> list[dict[str, Any]]:
    table = tables.object_versions
    rows = connection.execute(
        select(table)
        .where(and_(table.c.object_kind == kind, table.c.object_id == ident))
        .order_by(table.c.id)
    )
    return [
        {"version": r.version, "revision": r.revision, "meta": r.meta, "payload": r.payload}
        for r in rows
    ]


def live_versions(connection: Connection, kind: str, ident: str) -> list[rollbacks.Stretch]:
    """The versions an object has been live at, oldest first, from its lifecycle events:
    a new stretch each time an apply changed its version (its state changes do not
    count), starting after its last removal. A rollback reads "the version live before
    the current one" here, never from git parents."""
    table = tables.lifecycle_events
    rows = connection.execute(
        select(table.c.event_type, table.c.version_to, table.c.revision, table.c.timestamp)
        .where(
            and_(
                table.c.object_kind == kind,
                table.c.object_id == ident,
                table.c.event_type.in_(sorted(set(_EVENTS.values()))),  # applies only
            )
        )
        .order_by(table.c.id)
    )
    stretches: list[rollbacks.Stretch] = []
    for row in rows:
        if row.event_type.endswith("_removed"):
            stretches = []
        elif row.version_to is not None and (
            not stretches or stretches[-1].version != row.version_to
        ):
            stretches.append(rollbacks.Stretch(row.version_to, row.revision, _iso(row.timestamp)))
    return stretches


def live_version(connection: Connection, kind: str, ident: str) -> str | None:
    """The version of a live object, or None when no live object has that id."""
    table = tables.LIVE_TABLES[kind]
    found = connection.execute(select(table.c.version).where(table.c.object_id == ident)).first()
    return None if found is None else str(found[0])


record_event = written.record  # a lifecycle event that no apply writes


def quarantined_of(connection: Connection, kind: str, ident: str) -> frozenset[str]:
    table = tables.quarantined_versions
    rows = connection.execute(
        select(table.c.version).where(and_(table.c.object_kind == kind, table.c.object_id == ident))
    )
    return frozenset(row[0] for row in rows)


def versions_ever_used(connection: Connection, kind: str, ident: str) -> frozenset[str]:
    """Every version of an object ever applied (its version history) or quarantined:
    the versions an automatic bump must never pick again."""
    history, quarantined = tables.object_versions, tables.quarantined_versions
    applied = select(history.c.version).where(
        and_(history.c.object_kind == kind, history.c.object_id == ident)
    )
    held = select(quarantined.c.version).where(
        and_(quarantined.c.object_kind == kind, quarantined.c.object_id == ident)
    )
    return frozenset(row[0] for row in connection.execute(applied.union(held)))


@dataclasses.dataclass(frozen=True, slots=True)
class Suspension:
    """Whether applying is suspended (``grove suspend``), since when and by whom, as far
    as the registry knows (a suspension older than its event has neither), and the
    reason its suspender gave, if any."""

    suspended: bool
    since: str | None = None
    by: str | None = None
    reason: str | None = None


def suspension(connection: Connection) -> Suspension:
    state = tables.reconciler_state.c
    suspended = connection.execute(select(state.suspended).where(state.id == 1)).scalar_one()
    if not suspended:
        return Suspension(False)
    events = tables.lifecycle_events
    latest = connection.execute(
        select(events.c.timestamp, events.c.actor, events.c.details)
        .where(events.c.event_type == coordination.SUSPENDED_EVENT)
        .order_by(events.c.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return Suspension(True)
    details = latest.details if isinstance(latest.details, dict) else {}
    reason = details.get("reason")
    return Suspension(
        True,
        since=_iso(latest.timestamp),
        by=latest.actor,
        reason=reason if isinstance(reason, str) and reason else None,
    )


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


# ---------------------------------------------------------------- writing


def take_apply_lock(connection: Connection) -> None:
    """The cluster-wide apply lock, held until the transaction ends.

    PostgreSQL: a transaction-level advisory lock, waiting at most LOCK_TIMEOUT.
    SQLite: the transaction already began with BEGIN IMMEDIATE, which is the lock.
    """
    if connection.dialect.name != "postgresql":
        return
    try:
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(select(func.pg_advisory_xact_lock(APPLY_LOCK_KEY)))
    except DBAPIError as exc:
        if "lock timeout" in str(exc.orig).lower():
            raise errors.LockBusy("another reconciler holds the apply lock") from exc
        raise


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What an apply did: the new serial, or that the revision was already applied."""

    state_serial: int
    already_applied: bool = False
    changes: int = 0


def apply_plan(
    connection: Connection,
    plan: Plan,
    *,
    actor: str,
    forced_codes: Sequence[str] = (),
    fence: coordination.Lease | None = None,
) -> Applied:
    """Apply ``plan`` inside the caller's write transaction (lock, fence, compare-and-set, write).

    ``fence`` is the lease of a reconcile loop: the apply goes ahead only while it
    is still the current, unexpired lease (see `coordination.check_fence`).
    """
    take_apply_lock(connection)
    if fence is not None:
        coordination.check_fence(connection, fence)
    state = read_state(connection)
    if state.applied_revision == plan.revision and not plan.changes:
        return Applied(state.state_serial, already_applied=True)
    if state.applied_revision != plan.base_revision or state.state_serial != plan.state_serial:
        if state.applied_revision == plan.revision:
            return Applied(state.state_serial, already_applied=True)
        raise errors.StalePlan(
            f"the registry moved since this plan (now at revision "
            f"{(state.applied_revision or 'none')[:12]}, serial {state.state_serial}; "
            f"the plan expected {(plan.base_revision or 'none')[:12]}, serial "
            f"{plan.state_serial}); plan again"
        )
    failpoints.hit("apply_locked")
    forced = bool(forced_codes)
    serial = state.state_serial + (1 if plan.changes else 0)
    stamp = now()
    try:
        _write_changes(connection, plan.changes, plan.revision, stamp)
    except IntegrityError as exc:  # the plan disagrees with the rows: never apply half of it
        raise errors.StalePlan(
            "the registry's objects do not match this plan (a row it creates exists, or one "
            "it changes is gone); plan again"
        ) from exc
    _write_events(connection, plan, serial, actor, forced_codes, stamp)
    rollouts.begin(connection, plan.changes, plan.revision, stamp, actor=actor)
    connection.execute(
        insert(tables.revisions).values(
            revision=plan.revision,
            previous_revision=state.applied_revision,
            state_serial=serial,
            changes=len(plan.changes),
            summary={"counts": plan.counts(), "forced": list(forced_codes)},
            forced=forced,
            actor=actor,
            applied_at=stamp,
        )
    )
    guard = tables.reconciler_state.c
    done = connection.execute(
        update(tables.reconciler_state)
        .where(
            and_(
                guard.id == 1,
                guard.state_serial == state.state_serial,
                guard.applied_revision.is_(None)
                if state.applied_revision is None
                else guard.applied_revision == state.applied_revision,
            )
        )
        .values(
            applied_revision=plan.revision,
            applied_tree=plan.tree,
            attempted_revision=plan.revision,
            state_serial=serial,
            last_applied_at=stamp,
            last_attempt_at=stamp,
            last_error=None,
            applied_write_counter=guard.write_counter,  # after this apply's own writes
        )
    )
    if done.rowcount != 1:  # pragma: no cover - the lock makes this unreachable
        raise errors.StalePlan("the registry moved during the apply; plan again")
    if serial != state.state_serial:
        written.notify(connection, str(serial))
    return Applied(serial, changes=len(plan.changes))


def _live_values(change: Change, revision: str, stamp: dt.datetime) -> dict[str, Any]:
    assert change.document is not None
    return {
        "object_id": change.object_id,
        "version": change.version_to,
        "meta": change.document["meta"],
        "payload": change.document["payload"],
        "applied_hash": manifests.content_hash(change.document),
        "source_path": change.source_path,
        "source_blob": change.source_blob,
        "updated_at": stamp,
    }


def _write_changes(
    connection: Connection, changes: Iterable[Change], revision: str, stamp: dt.datetime
) -> None:
    creates: dict[str, list[dict[str, Any]]] = {kind: [] for kind in tables.LIVE_TABLES}
    new_versions: list[dict[str, Any]] = []
    for change in changes:
        table = tables.LIVE_TABLES[change.object_kind]
        if change.kind is ChangeKind.REMOVE:
            connection.execute(delete(table).where(table.c.object_id == change.object_id))
            continue
        failpoints.hit("apply_write")
        values = _live_values(change, revision, stamp)
        if change.kind is ChangeKind.CREATE:
            creates[change.object_kind].append({**values, "created_at": stamp})
        else:
            connection.execute(
                update(table).where(table.c.object_id == change.object_id).values(**values)
            )
        if change.kind in (ChangeKind.CREATE, ChangeKind.VERSION, ChangeKind.UPDATE):
            assert change.document is not None
            new_versions.append(
                {
                    "object_kind": change.object_kind,
                    "object_id": change.object_id,
                    "version": change.version_to,
                    "content_hash": manifests.version_hash(change.document),
                    "meta": change.document["meta"],
                    "payload": change.document["payload"],
                    "revision": revision,
                    "created_at": stamp,
                }
            )
    for kind, rows in creates.items():
        if rows:
            connection.execute(insert(tables.LIVE_TABLES[kind]), rows)
    _record_versions(connection, new_versions)


def _record_versions(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Keep every version; a forced reuse of a version string replaces its content."""
    if not rows:
        return
    table = tables.object_versions
    existing: dict[tuple[str, str, str], str] = {}
    for kind in sorted({row["object_kind"] for row in rows}):  # the key's index leads by kind
        idents = sorted({row["object_id"] for row in rows if row["object_kind"] == kind})
        for start in range(0, len(idents), 1000):  # PostgreSQL takes at most 65,535 parameters
            for r in connection.execute(
                select(table.c.object_id, table.c.version, table.c.content_hash).where(
                    and_(
                        table.c.object_kind == kind,
                        table.c.object_id.in_(idents[start : start + 1000]),
                    )
                )
            ):
                existing[(kind, r.object_id, r.version)] = r.content_hash
    fresh = [r for r in rows if (r["object_kind"], r["object_id"], r["version"]) not in existing]
    if fresh:
        connection.execute(insert(table), fresh)
    for row in rows:
        key = (row["object_kind"], row["object_id"], row["version"])
        if key in existing and existing[key] != row["content_hash"]:
            connection.execute(
                update(table)
                .where(
                    and_(
                        table.c.object_kind == row["object_kind"],
                        table.c.object_id == row["object_id"],
                        table.c.version == row["version"],
                    )
                )
                .values(
                    content_hash=row["content_hash"],
                    meta=row["meta"],
                    payload=row["payload"],
                    revision=row["revision"],
                )
            )


def _write_events(
    connection: Connection,
    plan: Plan,
    serial: int,
    actor: str,
    forced_codes: Sequence[str],
    stamp: dt.datetime,
) -> None:
    rows: list[dict[str, Any]] = []
    forced = bool(forced_codes)
    for change in plan.changes:
        base = {
            "object_kind": change.object_kind,
            "object_id": change.object_id,
            "version_from": change.version_from,
            "version_to": change.version_to,
            "revision": plan.revision,
            "state_serial": serial,
            "forced": forced,
            "actor": actor,
            "timestamp": stamp,
        }
        details: dict[str, Any] = {"stateFrom": change.state_from, "stateTo": change.state_to}
        if forced:
            details["forcedOver"] = list(forced_codes)
        event = _EVENTS.get((change.object_kind, change.kind))
        if event is not None:
            rows.append({**base, "event_type": event, "details": details})
        if change.corrects_drift or change.kind is ChangeKind.RESTORE:
            drift = {"fields": [f.path for f in change.fields][:50]}
            rows.append({**base, "event_type": "drift_corrected", "details": drift})
    if rows:
        connection.execute(insert(tables.lifecycle_events), rows)


def record_attempt(
    connection: Connection,
    *,
    revision: str | None,
    error: str | None,
    conditions: dict[str, Any],
) -> None:
    connection.execute(
        update(tables.reconciler_state)
        .where(tables.reconciler_state.c.id == 1)
        .values(
            last_attempt_at=now(),
            last_error=error,
            conditions=conditions,
            **({"attempted_revision": revision} if revision is not None else {}),
        )
    )


def record_failure(
    connection: Connection, *, revision: str | None, actor: str, details: dict[str, Any]
) -> None:
    """A ``reconcile_failed`` lifecycle event: a cycle ended in an unexpected error.

    It is about the reconciler, not an object: kind ``Reconciler``, id ``reconcile``.
    """
    record_event(
        connection,
        "reconcile_failed",
        "Reconciler",
        "reconcile",
        version_from=None,
        version_to=None,
        revision=revision,
        actor=actor,
        details=details,
    )


def set_protection(
    connection: Connection, kind: str, ident: str, *, protect: bool, actor: str, reason: str = ""
) -> bool:
    """Protect or unprotect; return whether anything changed."""
    table = tables.protections
    where = and_(table.c.object_kind == kind, table.c.object_id == ident)
    present = connection.execute(select(table.c.object_id).where(where)).first() is not None
    if protect == present:
        return False
    if protect:
        connection.execute(
            insert(table).values(
                object_kind=kind, object_id=ident, reason=reason, created_by=actor, created_at=now()
            )
        )
    else:
        connection.execute(delete(table).where(where))
    connection.execute(
        insert(tables.lifecycle_events).values(
            event_type="object_protected" if protect else "object_unprotected",
            object_kind=kind,
            object_id=ident,
            state_serial=state_serial(connection),
            forced=False,
            actor=actor,
            details={"reason": reason} if reason else {},
            timestamp=now(),
        )
    )
    return True


def quarantine(connection: Connection, kind: str, ident: str, version: str, reason: str) -> None:
    """Keep ``version`` of an object from being applied again (P003); idempotent, also when
    two callers quarantine the same version at once."""
    values = {
        "object_kind": kind,
        "object_id": ident,
        "version": version,
        "reason": reason,
        "created_at": now(),
    }
    table = tables.quarantined_versions
    if connection.dialect.name == "postgresql":
        connection.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
    else:
        connection.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())


def live_kinds_of(connection: Connection, ident: str) -> list[str]:
    """Object types that have a live object with this id."""
    found = []
    for kind, table in tables.LIVE_TABLES.items():
        if connection.execute(select(table.c.object_id).where(table.c.object_id == ident)).first():
            found.append(kind)
    return found


def latest_event_id(connection: Connection) -> int:
    table = tables.lifecycle_events
    found = connection.execute(select(func.max(table.c.id))).scalar()
    return int(found or 0)


def events_after(connection: Connection, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """Lifecycle events newer than ``after_id``, oldest first, each with its ``id``."""
    table = tables.lifecycle_events
    rows = connection.execute(
        select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
    )
    return [{"id": int(row.id), **_event(row)} for row in rows]


def updated_at(connection: Connection, kind: str) -> dict[str, str | None]:
    """When each live object of ``kind`` last changed (its last apply), by id, ISO 8601."""
    table = tables.LIVE_TABLES[kind]
    rows = connection.execute(select(table.c.object_id, table.c.updated_at))
    return {row.object_id: _iso(row.updated_at) for row in rows}
