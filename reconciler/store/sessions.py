"""Console sessions: made from a verified API token, kept on the server.

The browser holds only a random secret in an HttpOnly cookie; the table holds its
SHA-256, the id of the token it was made from and the session's CSRF secret. A
session is valid while it has not expired and its token is not revoked, so
revoking a token (``grove token revoke``) signs its browsers out too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

from sqlalchemy import Connection, and_, delete, insert, select

from reconciler.store import tables
from reconciler.store.tokens import Identity


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    csrf: str
    expires_at: dt.datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(connection: Connection, identity: Identity, *, ttl_s: float) -> tuple[str, Session]:
    """A new session for ``identity``: the cookie's secret (shown once) and the session.
    Expired sessions are removed on the way, so the table holds only live ones."""
    now = dt.datetime.now(dt.UTC)
    connection.execute(
        delete(tables.console_sessions).where(tables.console_sessions.c.expires_at < now)
    )
    secret = secrets.token_urlsafe(32)
    session = Session(identity, secrets.token_urlsafe(32), now + dt.timedelta(seconds=ttl_s))
    connection.execute(
        insert(tables.console_sessions).values(
            id_hash=_digest(secret),
            token_id=identity.token_id,
            csrf=session.csrf,
            expires_at=session.expires_at,
        )
    )
    return secret, session


def find(connection: Connection, secret: str) -> Session | None:
    """The live session of a cookie's ``secret``: None when unknown, expired, or its token
    is revoked."""
    table, token_table = tables.console_sessions, tables.api_tokens
    row = connection.execute(
        select(
            table.c.csrf,
            table.c.expires_at,
            token_table.c.id,
            token_table.c.name,
            token_table.c.role,
        )
        .join(token_table, token_table.c.id == table.c.token_id)
        .where(and_(table.c.id_hash == _digest(secret), token_table.c.revoked_at.is_(None)))
    ).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
    if expires <= dt.datetime.now(dt.UTC):
        return None
    return Session(Identity(row.id, row.name, row.role), row.csrf, expires)


def end(connection: Connection, secret: str) -> None:
    """Sign out: the session is gone from the table (its cookie is worth nothing after)."""
    table = tables.console_sessions
    connection.execute(delete(table).where(table.c.id_hash == _digest(secret)))
