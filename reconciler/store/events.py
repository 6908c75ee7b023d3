"""Writing lifecycle events outside an apply, and the routers' notification channel.

Below both `registry` (whose apply starts rollouts) and `rollouts` (which records its
own events and wakes the routers), so that neither writes its own copy of them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, insert, select

from reconciler.store import tables

NOTIFY_CHANNEL = "grove_registry"  # PostgreSQL: routers and loops reload on it


def state_serial(connection: Connection) -> int:
    value = connection.execute(
        select(tables.reconciler_state.c.state_serial).where(tables.reconciler_state.c.id == 1)
    ).scalar_one()
    return int(value)


def notify(connection: Connection, payload: str) -> None:
    """Wake every router and loop listening (PostgreSQL; SQLite's file watch sees the
    write itself), when the transaction commits."""
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_notify(NOTIFY_CHANNEL, payload)))


def record(
    connection: Connection,
    event_type: str,
    kind: str,
    ident: str,
    *,
    version_from: str | None,
    version_to: str | None,
    revision: str | None,
    actor: str,
    details: dict[str, Any],
) -> None:
    """A lifecycle event that no apply writes (a rollback's, a rollout's)."""
    connection.execute(
        insert(tables.lifecycle_events).values(
            event_type=event_type,
            object_kind=kind,
            object_id=ident,
            version_from=version_from,
            version_to=version_to,
            revision=revision,
            state_serial=state_serial(connection),
            forced=False,
            actor=actor[:200],
            details=details,
            timestamp=dt.datetime.now(dt.UTC),
        )
    )
