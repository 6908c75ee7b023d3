"""store.sessions on both databases: a session is found by its secret only, ends with its
token or its time, and sign-out removes it; nothing of the secret is stored."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.store import sessions, tokens
from reconciler.store.engine import Database
from tests.conftest import Registry


# both, whatever tests/web/conftest.py's db_url says for the console's pages
@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_session_lives_with_its_token_and_its_time(registry: Registry) -> None:
    db = Database(registry.url)
    try:
        with db.transaction(write=True) as connection:
            token = tokens.create(connection, name="alice", role="operator", created_by="t")
            identity = tokens.verify(connection, token)
            assert identity is not None
            secret, made = sessions.create(connection, identity, ttl_s=60)
            short, _ = sessions.create(connection, identity, ttl_s=-1)  # already over
        with db.transaction() as connection:
            found = sessions.find(connection, secret)
            assert found is not None
            assert found.identity == identity
            assert found.csrf == made.csrf
            assert found.expires_at > dt.datetime.now(dt.UTC)
            assert sessions.find(connection, short) is None
            assert sessions.find(connection, secret + "x") is None
        stored = registry.sql("SELECT id_hash, csrf FROM console_sessions")
        assert all(secret not in str(row) for row in stored)
        with db.transaction(write=True) as connection:
            tokens.revoke(connection, "alice")
        with db.transaction() as connection:
            assert sessions.find(connection, secret) is None  # revoked token: signed out
        with db.transaction(write=True) as connection:
            sessions.end(connection, secret)
        assert registry.sql("SELECT count(*) FROM console_sessions")[0][0] == 1  # the expired
        with db.transaction(write=True) as connection:
            sessions.create(connection, identity, ttl_s=60)  # a new one sweeps the expired
        assert registry.sql("SELECT count(*) FROM console_sessions")[0][0] == 1
    finally:
        db.dispose()
