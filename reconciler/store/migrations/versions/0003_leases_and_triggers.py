"""Leader lease with a fencing epoch, and a manual trigger counter

Replicas of the reconcile loop elect a leader through the ``leases`` row: the
holder renews it before it expires; anyone may take an expired lease, which
bumps the epoch. The apply transaction checks the epoch it was started under,
so a leader that lost its lease (paused, partitioned) can never apply.
``reconciler_state.trigger_counter`` is bumped by ``grove reconcile --now``
(and the API) to ask the running loop for a cycle.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    leases = sa.table(
        "leases",
        sa.column("name", sa.String()),
        sa.column("epoch", sa.BigInteger()),
        sa.column("expires_ms", sa.BigInteger()),
    )
    op.bulk_insert(leases, [{"name": "reconciler", "epoch": 0, "expires_ms": 0}])
    # Plain ALTER TABLE, not a batch copy: on SQLite a copy-and-rename of
    # reconciler_state would break the write-counting triggers of 0002.
    op.add_column(
        "reconciler_state",
        sa.Column("trigger_counter", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE reconciler_state DROP COLUMN trigger_counter")
    op.drop_table("leases")
