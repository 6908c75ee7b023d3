"""Progressive delivery: the model version of every routing log row, and rollouts

``routing_logs.model_version`` says which version of a model served an attempt
(null for rows written before this migration). ``rollouts`` holds each canary
or post-deploy verification of a model version: its steps, the step it is at,
the canary's weight, its phase, every judgement with its figures, and how its
rollback went. ``reconciler_state.rollout_serial`` grows with every change of a
rollout that changes routing, so routers reload their snapshot.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("routing_logs", sa.Column("model_version", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_routing_logs_model_version_time",
        "routing_logs",
        ["model_id", "model_version", "timestamp"],
    )
    op.add_column(
        "reconciler_state",
        sa.Column("rollout_serial", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "rollouts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_id", sa.String(length=63), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("stable_version", sa.String(length=64), nullable=False),
        sa.Column("canary_version", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("slo", JSON, nullable=False),
        sa.Column("on_inconclusive", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("rollback", sa.String(length=24), nullable=False, server_default=""),
        sa.Column("rollback_commit", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("analysis", JSON, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_index("ix_rollouts_model", "rollouts", ["model_id", "id"])
    op.create_index("ix_rollouts_phase", "rollouts", ["phase"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_phase", table_name="rollouts")
    op.drop_index("ix_rollouts_model", table_name="rollouts")
    op.drop_table("rollouts")
    # plain DROP COLUMN (SQLite 3.35+): no table copy, the triggers of 0002 stay
    op.execute("ALTER TABLE reconciler_state DROP COLUMN rollout_serial")
    op.drop_index("ix_routing_logs_model_version_time", table_name="routing_logs")
    op.execute("ALTER TABLE routing_logs DROP COLUMN model_version")
