"""Coordination between reconcile loops through the database: lease, fence, trigger, suspend.

A lease names one leader among any number of loops. Time is the database's
clock (never the replicas'), in milliseconds. Taking a lease that expired or
was released bumps its epoch; the apply transaction checks the epoch it was
started under (:func:`check_fence`) while holding the lease row, so a leader
that was paused past its lease can never apply after somebody else took over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    case,
    cast,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)

from reconciler.base import errors
from reconciler.store import tables

RECONCILER_LEASE = "reconciler"
TRIGGER_CHANNEL = "grove_trigger"


def now_ms(connection: Connection) -> ColumnElement[int]:
    """The database clock in milliseconds since the epoch, as an SQL expression."""
    if connection.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", func.clock_timestamp()) * 1000), BigInteger)
    return cast((func.julianday(literal_column("'now'")) - 2440587.5) * 86_400_000, BigInteger)


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    epoch: int
    expires_ms: int


def acquire(connection: Connection, holder: str, ttl_ms: int) -> Lease | None:
    """Take or renew the lease; None when another holder's lease is still valid."""
    table = tables.leases
    clock = now_ms(connection)
    result = connection.execute(
        update(table)
        .where(
            and_(
                table.c.name == RECONCILER_LEASE,
                or_(
                    table.c.holder == holder, table.c.holder.is_(None), table.c.expires_ms <= clock
                ),
            )
        )
        .values(
            epoch=case((table.c.holder == holder, table.c.epoch), else_=table.c.epoch + 1),
            holder=holder,
            expires_ms=clock + ttl_ms,
        )
    )
    if result.rowcount != 1:
        return None
    row = connection.execute(
        select(table.c.holder, table.c.epoch, table.c.expires_ms).where(
            table.c.name == RECONCILER_LEASE
        )
    ).one()
    return Lease(row.holder, int(row.epoch), int(row.expires_ms))


def release(connection: Connection, holder: str) -> None:
    """Give the lease up at once (graceful shutdown), so another loop need not wait."""
    table = tables.leases
    connection.execute(
        update(table)
        .where(and_(table.c.name == RECONCILER_LEASE, table.c.holder == holder))
        .values(expires_ms=0)
    )


def current(connection: Connection) -> Lease | None:
    table = tables.leases
    row = connection.execute(
        select(table.c.holder, table.c.epoch, table.c.expires_ms).where(
            and_(table.c.name == RECONCILER_LEASE, table.c.expires_ms > now_ms(connection))
        )
    ).first()
    if row is None or row.holder is None:
        return None
    return Lease(row.holder, int(row.epoch), int(row.expires_ms))


def check_fence(connection: Connection, lease: Lease) -> None:
    """Inside the apply transaction: raise LeaseLost unless ``lease`` is still ours and valid.

    On PostgreSQL the lease row is locked (FOR SHARE) until the transaction
    ends, so nobody can take it over halfway through the apply.
    """
    table = tables.leases
    query = select(
        table.c.holder, table.c.epoch, (table.c.expires_ms > now_ms(connection)).label("valid")
    ).where(table.c.name == RECONCILER_LEASE)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = connection.execute(query).one()
    if row.holder != lease.holder or int(row.epoch) != lease.epoch or not row.valid:
        raise errors.LeaseLost(
            f"the reconciler lease moved to {row.holder or 'nobody'} (epoch {row.epoch}); "
            f"this loop held epoch {lease.epoch} and stands down"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Signals:
    """What a loop polls each tick: cheap, one row."""

    state_serial: int
    trigger_counter: int
    suspended: bool
    applied_revision: str | None


def poll(connection: Connection) -> Signals:
    state = tables.reconciler_state.c
    row = connection.execute(
        select(
            state.state_serial, state.trigger_counter, state.suspended, state.applied_revision
        ).where(state.id == 1)
    ).one()
    return Signals(
        int(row.state_serial), int(row.trigger_counter), bool(row.suspended), row.applied_revision
    )


def trigger(connection: Connection) -> int:
    """Ask running loops for a cycle now; returns the new trigger count."""
    state = tables.reconciler_state
    connection.execute(
        update(state).where(state.c.id == 1).values(trigger_counter=state.c.trigger_counter + 1)
    )
    count = int(
        connection.execute(select(state.c.trigger_counter).where(state.c.id == 1)).scalar_one()
    )
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": TRIGGER_CHANNEL, "payload": str(count)},
        )
    return count


SUSPENDED_EVENT = "reconciler_suspended"
RESUMED_EVENT = "reconciler_resumed"


def set_suspended(
    connection: Connection, suspended: bool, *, actor: str = "cli", reason: str = ""
) -> bool:
    """Suspend or resume applying; return whether it changed. A change is recorded as a
    lifecycle event (kind ``Reconciler``), which says since when a freeze holds, and why
    when the caller gave a ``reason`` (the console asks for one)."""
    state = tables.reconciler_state
    row = connection.execute(
        select(state.c.suspended, state.c.state_serial).where(state.c.id == 1)
    ).one()
    connection.execute(update(state).where(state.c.id == 1).values(suspended=suspended))
    if bool(row.suspended) == suspended:
        return False
    connection.execute(
        insert(tables.lifecycle_events).values(
            event_type=SUSPENDED_EVENT if suspended else RESUMED_EVENT,
            object_kind="Reconciler",
            object_id="reconcile",
            state_serial=int(row.state_serial),
            forced=False,
            actor=actor[:200],
            details={"reason": reason[:500]} if reason else {},
            timestamp=dt.datetime.now(dt.UTC),
        )
    )
    return True
