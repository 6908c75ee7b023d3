"""Quarantined versions: every one held back from being applied again (P003), and the
lift of one by an admin.

A version is quarantined by a rollback (``grove rollback``, or a rollout that failed or
was aborted: `registry.quarantine`); lifting it deletes its row and records a
``quarantine_lifted`` event naming who lifted it and why it was held, and asks the
running reconcile loops for a cycle (as ``grove reconcile --now``), in one
transaction: a revision refused because it held that version (P003) is planned
again at once instead of waiting for a new commit. Nothing is committed to git.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Connection, and_, delete, select

from reconciler.store import coordination, registry, tables

EVENT = "quarantine_lifted"


@dataclasses.dataclass(frozen=True, slots=True)
class Quarantined:
    kind: str
    ident: str
    version: str
    reason: str
    since: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        since = self.since
        if since is not None and since.tzinfo is None:  # SQLite hands back naive UTC
            since = since.replace(tzinfo=dt.UTC)
        return {
            "kind": self.kind,
            "id": self.ident,
            "version": self.version,
            "reason": self.reason,
            "since": None
            if since is None
            else since.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }


def _of(row: Any) -> Quarantined:
    return Quarantined(row.object_kind, row.object_id, row.version, row.reason, row.created_at)


def listing(
    connection: Connection,
    *,
    ident: str | None = None,
    kind: str | None = None,
    version: str | None = None,
) -> list[Quarantined]:
    """The quarantined versions (of ``ident``, of ``kind``, at ``version`` when given), by
    object, then oldest first."""
    table = tables.quarantined_versions
    query = select(table)
    if ident is not None:
        query = query.where(table.c.object_id == ident)
    if kind is not None:
        query = query.where(table.c.object_kind == kind)
    if version is not None:
        query = query.where(table.c.version == version)
    rows = connection.execute(
        query.order_by(table.c.object_id, table.c.object_kind, table.c.created_at, table.c.version)
    )
    return [_of(row) for row in rows]


def lift(connection: Connection, held: Quarantined, *, actor: str, reason: str = "") -> bool:
    """Let ``held`` be applied again, record who lifted it and wake the loops; False when
    it was not quarantined (any more: another lift came first)."""
    table = tables.quarantined_versions
    done = connection.execute(
        delete(table).where(
            and_(
                table.c.object_kind == held.kind,
                table.c.object_id == held.ident,
                table.c.version == held.version,
            )
        )
    )
    if done.rowcount != 1:
        return False
    details: dict[str, Any] = {"quarantinedFor": held.reason[:500]}
    if held.since is not None:
        details["quarantinedSince"] = held.to_json()["since"]
    if reason:
        details["reason"] = reason[:500]
    registry.record_event(
        connection,
        EVENT,
        held.kind,
        held.ident,
        version_from=held.version,
        version_to=None,
        revision=None,
        actor=actor,
        details=details,
    )
    coordination.trigger(connection)  # a loop holding a P003-refused revision tries again
    return True
