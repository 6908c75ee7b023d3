"""Schema migrations with Alembic: ``grove db upgrade`` / ``grove db downgrade``.

Every command that uses the registry first calls :func:`require_current`, so
an unmigrated or newer-schema database fails with one line saying what to run
instead of an SQL error halfway through.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from reconciler.base import errors
from reconciler.store.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


def _config(connection: Connection | None = None) -> Config:
    # Alembic (with the Mako and Pygments it loads, about 0.3 s) is imported only to
    # migrate: every other command and every server reads the revisions below instead
    from alembic.config import Config  # noqa: PLC0415 - loaded to migrate only

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _revisions() -> dict[str, tuple[str, ...]]:
    """revision -> the revisions it follows (``down_revision``), for every migration
    script, read from the scripts' text as Alembic's ScriptDirectory reads them
    (tests/reconciling/test_migrations.py compares the two)."""
    found: dict[str, tuple[str, ...]] = {}
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        values: dict[str, object] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("revision", "down_revision")
            ):
                values[node.targets[0].id] = ast.literal_eval(node.value)
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str):
            continue
        if down is None:
            found[revision] = ()
        elif isinstance(down, str):
            found[revision] = (down,)
        else:  # a merge: a tuple of revisions
            assert isinstance(down, tuple | list), script
            found[revision] = tuple(str(parent) for parent in down)
    return found


def head() -> str:
    revisions = _revisions()
    followed = {parent for parents in revisions.values() for parent in parents}
    heads = [revision for revision in revisions if revision not in followed]
    assert len(heads) == 1, heads
    return heads[0]


def known_revisions() -> set[str]:
    return set(_revisions())


def current(db: Database) -> str | None:
    with db.transaction() as connection:
        return current_on(connection)


def current_on(connection: Connection) -> str | None:
    """The schema revision, read in the caller's transaction (as Alembic's
    ``MigrationContext.get_current_revision`` reads it: None without the table)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    found = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608 - a constant
    if len(found) > 1:
        raise errors.DatabaseNotReady(
            f"the registry database's {VERSION_TABLE} table names {len(found)} schema "
            "revisions; it must name one"
        )
    return str(found[0]) if found else None


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
    from alembic import command  # noqa: PLC0415 - loaded to migrate only
    from alembic.util.exc import CommandError  # noqa: PLC0415

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
