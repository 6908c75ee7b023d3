"""Count writes to the live tables, so a no-op reconcile can skip the drift scan

Every INSERT, UPDATE or DELETE on model_registry or routing_rules, by Grove or
by anybody else, bumps reconciler_state.write_counter (a trigger). An apply
records the counter it left behind; while the two are equal nobody has written
to the live tables since, so there can be no drift and the reconciler need not
read and hash every live object to find out.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE_TABLES = ("model_registry", "routing_rules")
BUMP = "UPDATE reconciler_state SET write_counter = write_counter + 1 WHERE id = 1"


def upgrade() -> None:
    with op.batch_alter_table("reconciler_state") as batch:
        batch.add_column(
            sa.Column("write_counter", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("applied_write_counter", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION grove_count_write() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in LIVE_TABLES:
            op.execute(
                f"CREATE TRIGGER grove_{table}_writes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION grove_count_write()"
            )
        return
    for table in LIVE_TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER grove_{table}_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LIVE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS grove_{table}_writes ON {table}")
        op.execute("DROP FUNCTION IF EXISTS grove_count_write()")
    else:
        for table in LIVE_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS grove_{table}_{event}")
    with op.batch_alter_table("reconciler_state") as batch:
        batch.drop_column("applied_write_counter")
        batch.drop_column("write_counter")
