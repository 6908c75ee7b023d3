"""Alembic environment: runs on the connection Grove hands over (see store/migrating.py)."""

from __future__ import annotations

from alembic import context

from reconciler.store import tables

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=tables.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
