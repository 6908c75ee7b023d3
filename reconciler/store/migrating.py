"""Schema migrations with Alembic: ``grove db upgrade`` / ``grove db downgrade``.

Every command that uses the registry first calls :func:`require_current`, so
an unmigrated or newer-schema database fails with one line saying what to run
instead of an SQL error halfway through.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection

from reconciler.base import errors
from reconciler.store.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None
    return found


def known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def current(db: Database) -> str | None:
    with db.transaction() as connection:
        return current_on(connection)


def current_on(connection: Connection) -> str | None:
    """The schema revision, read in the caller's transaction."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate up; return (revision before, revision after)."""
    before = current(db)
    _run(db, "upgrade", revision)
    return before, current(db)


def downgrade(db: Database, revision: str) -> tuple[str | None, str | None]:
    before = current(db)
    _run(db, "downgrade", revision)
    return before, current(db)


def _run(db: Database, action: str, revision: str) -> None:
    try:
        with db.transaction(write=True) as connection:
            config = _config(connection)
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
    except CommandError as exc:
        raise errors.UsageError(f"db {action} {revision}: {exc}") from exc


def require_current(db: Database) -> None:
    """Raise :class:`errors.DatabaseNotReady` unless the schema is exactly at head.

    The messages name no database (its URL holds a host, a user, a name): the
    operator gave it, and `grove db check` shows which one it is."""
    with db.transaction() as connection:
        require_current_on(connection)


def require_current_at_start(db: Database) -> None:
    """At a server's start: a schema that is missing, older or newer, or a file that
    cannot be read, stops it (a human must act first); a database that cannot be
    reached now does not (the router serves its saved snapshot until it returns)."""
    try:
        require_current(db)
    except errors.TemporaryError:
        return


def require_current_on(connection: Connection) -> None:
    """:func:`require_current` in the caller's transaction."""
    found = current_on(connection)
    wanted = head()
    if found == wanted:
        return
    if found is None:
        raise errors.DatabaseNotReady(
            "the registry database has no Grove schema; run `grove db upgrade`"
        )
    if found not in known_revisions():
        raise errors.DatabaseNotReady(
            f"the registry database is at schema {found}, newer than this grove knows "
            f"(head {wanted}); upgrade grove"
        )
    raise errors.DatabaseNotReady(
        f"the registry database is at schema {found}, this grove needs {wanted}; "
        "run `grove db upgrade`"
    )
