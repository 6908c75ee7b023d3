"""Migrations build exactly the schema the code declares, on both databases, both ways."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from reconciler.store import migrating, tables
from reconciler.store.engine import Database


def test_head_matches_the_declared_tables_and_downgrades_cleanly(db_url: str) -> None:
    db = Database(db_url)
    try:
        migrating.upgrade(db)
        with db.transaction() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, tables.metadata) == []
        migrating.downgrade(db, "0004")
        migrating.downgrade(db, "0003")
        migrating.downgrade(db, "0002")
        migrating.downgrade(db, "0001")
        migrating.downgrade(db, "base")
        with db.transaction() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        assert migrating.upgrade(db) == (None, migrating.head())
        migrating.require_current(db)
    finally:
        db.dispose()


def test_every_write_to_a_live_table_is_counted(db_url: str) -> None:
    from sqlalchemy import insert, select, update

    db = Database(db_url)
    try:
        migrating.upgrade(db)
        counter = tables.reconciler_state.c.write_counter
        with db.transaction(write=True) as connection:
            start = connection.execute(select(counter)).scalar_one()
            connection.execute(
                insert(tables.routing_rules).values(
                    object_id="r", version="1", meta={}, payload={}, applied_hash="h"
                )
            )
            connection.execute(update(tables.routing_rules).values(version="2"))
            after = connection.execute(select(counter)).scalar_one()
        assert after - start == 2
    finally:
        db.dispose()


def test_the_revisions_read_without_alembic_are_alembics(db_url: str) -> None:
    """store/migrating.py reads the scripts' revisions and the version table itself, so
    that only a migration loads Alembic: the same answers as Alembic's own."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrating._config())
    assert migrating.head() == scripts.get_current_head()
    assert migrating.known_revisions() == {s.revision for s in scripts.walk_revisions()}
    db = Database(db_url)
    try:
        for target in (None, "0003", "head"):
            if target is not None:
                migrating.upgrade(db, target)
            with db.transaction() as connection:
                alembics = MigrationContext.configure(connection).get_current_revision()
                assert migrating.current_on(connection) == alembics
            assert alembics == (
                None if target is None else migrating.head() if target == "head" else target
            )
    finally:
        db.dispose()
