"""API tokens: create (shown once), verify in constant time, revoke.

A token reads ``grove_<id>_<secret>``. The id finds the row; the secret is
compared as a SHA-256 digest with ``hmac.compare_digest``. Unknown ids are
compared against a dummy digest too, so the time taken does not tell an
attacker which part was wrong.

A token has one role (DESIGN.md section 6). ``viewer``, ``operator`` and ``admin``
are a ladder, each holding the rights of the ones below it; ``client``, the role to
give applications, stands beside it: it may call the data plane (``POST
/api/routing/execute`` and ``/v1/*``) and nothing else, not even a read. Operators
and admins call the data plane too; viewers do not.

A token's name is its holder's identity: the author of the git commits its writes
make, ``api:<name>`` in lifecycle events. Names match :data:`NAME` and are unique
(revoked ones stay taken), so two tokens can never write as the same author.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy import exc as sa_exc

from reconciler.base import errors
from reconciler.store import tables

ROLES = ("viewer", "operator", "admin", "client")
LADDER = ("viewer", "operator", "admin")  # each role holds the rights of those before it
# The roles that may call the data plane: what ``allows("client")`` asks.
DATA_PLANE = frozenset({"client", "operator", "admin"})
_TOKEN = re.compile(r"^grove_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
_DUMMY = hashlib.sha256(b"grove-dummy-secret").hexdigest()
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # DESIGN.md section 6, used whole


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    token_id: str
    name: str
    role: str

    def allows(self, role: str) -> bool:
        """Whether this identity may do what ``role`` may: ``client`` asks for the data
        plane, any other role for its rung of :data:`LADDER` (which a client is not on).
        A role this version does not know allows nothing."""
        if role == "client":
            return self.role in DATA_PLANE
        if self.role not in LADDER or role not in LADDER:
            return False
        return LADDER.index(self.role) >= LADDER.index(role)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_name(name: str) -> None:
    """Refuse a name that is not :data:`NAME` (the message shows it escaped)."""
    if not NAME.fullmatch(name):
        raise errors.UsageError(
            f"token name {name!r} is not valid: use 1 to 64 lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or a digit (such as ci-deployer)"
        )


def create(connection: Connection, *, name: str, role: str, created_by: str) -> str:
    """Store a new token and return it; it cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    check_name(name)
    table = tables.api_tokens
    taken = errors.UsageError(f"a token named {name!r} exists; revoke it or pick another name")
    if connection.execute(select(table.c.id).where(table.c.name == name)).first() is not None:
        raise taken
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    try:
        connection.execute(
            insert(table).values(
                id=token_id,
                name=name,
                role=role,
                secret_hash=_digest(secret),
                created_by=created_by,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    except sa_exc.IntegrityError:  # a concurrent create of the same name won
        raise taken from None  # (the caller's transaction rolls back)
    return f"grove_{token_id}_{secret}"


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape :func:`create` gives every token: a check with no
    database, for refusing what cannot be a token before any work on its request."""
    return _TOKEN.match(token) is not None


def verify(connection: Connection, token: str) -> Identity | None:
    match = _TOKEN.match(token)
    token_id, secret = (match.group(1), match.group(2)) if match else ("", token)
    table = tables.api_tokens
    row = connection.execute(
        select(table.c.id, table.c.name, table.c.role, table.c.secret_hash).where(
            and_(table.c.id == token_id, table.c.revoked_at.is_(None))
        )
    ).first()
    expected = row.secret_hash if row is not None else _DUMMY
    equal = hmac.compare_digest(_digest(secret), expected)
    if row is None or not equal or match is None:
        return None
    return Identity(row.id, row.name, row.role)


def revoke(connection: Connection, name: str) -> bool:
    table = tables.api_tokens
    done = connection.execute(
        update(table)
        .where(and_(table.c.name == name, table.c.revoked_at.is_(None)))
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
    return done.rowcount == 1


def revoked_among(connection: Connection, token_ids: Collection[str]) -> set[str]:
    """Which of ``token_ids`` are revoked or gone: an open event stream ends with its token."""
    if not token_ids:
        return set()
    table = tables.api_tokens
    active = connection.execute(
        select(table.c.id).where(and_(table.c.id.in_(token_ids), table.c.revoked_at.is_(None)))
    ).scalars()
    return set(token_ids) - set(active)


def listing(connection: Connection) -> list[dict[str, object]]:
    table = tables.api_tokens
    return [
        {
            "name": r.name,
            "role": r.role,
            "revoked": r.revoked_at is not None,
            "createdAt": r.created_at.isoformat() if r.created_at else None,
        }
        for r in connection.execute(select(table).order_by(table.c.name))
    ]
