"""Initial registry schema: live objects, versions, apply state, history, brief tables

Revision ID: 0001
Revises:
Create Date: 2026-11-27 02:06:36.823616
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "lifecycle_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("object_kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("version_from", sa.String(length=64), nullable=True),
        sa.Column("version_to", sa.String(length=64), nullable=True),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("state_serial", sa.BigInteger(), nullable=False),
        sa.Column("forced", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_events")),
    )
    with op.batch_alter_table("lifecycle_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lifecycle_events_object", ["object_kind", "object_id"], unique=False
        )

    op.create_table(
        "model_metrics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("metric_type", sa.Text(), nullable=False),
        sa.Column("metric_value", sa.Numeric(), nullable=False),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_metrics")),
    )
    with op.batch_alter_table("model_metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_model_metrics_model_time", ["model_id", "metric_type", "timestamp"], unique=False
        )

    op.create_table(
        "model_registry",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "meta",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("applied_hash", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.Text(), server_default="", nullable=False),
        sa.Column("source_blob", sa.String(length=64), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_registry")),
        sa.UniqueConstraint("object_id", name=op.f("uq_model_registry_object_id")),
    )
    op.create_table(
        "object_versions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("object_kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "meta",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_object_versions")),
        sa.UniqueConstraint("object_kind", "object_id", "version", name="uq_object_versions_key"),
    )
    op.create_table(
        "protections",
        sa.Column("object_kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("object_kind", "object_id", name=op.f("pk_protections")),
    )
    op.create_table(
        "quarantined_versions",
        sa.Column("object_kind", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "object_kind", "object_id", "version", name=op.f("pk_quarantined_versions")
        ),
    )
    op.create_table(
        "reconciler_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("applied_revision", sa.String(length=64), nullable=True),
        sa.Column("applied_tree", sa.String(length=64), nullable=True),
        sa.Column("attempted_revision", sa.String(length=64), nullable=True),
        sa.Column("state_serial", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "conditions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("suspended", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciler_state")),
    )
    op.create_table(
        "revisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("revision", sa.String(length=64), nullable=False),
        sa.Column("previous_revision", sa.String(length=64), nullable=True),
        sa.Column("state_serial", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("forced", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column(
            "applied_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
    )
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.create_index("ix_revisions_revision", ["revision"], unique=False)

    op.create_table(
        "routing_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("task_type", sa.Text(), nullable=False),
        sa.Column("capability_required", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column(
            "routing_decision",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_logs")),
    )
    with op.batch_alter_table("routing_logs", schema=None) as batch_op:
        batch_op.create_index("ix_routing_logs_model_time", ["model_id", "timestamp"], unique=False)

    op.create_table(
        "routing_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("object_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "meta",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("applied_hash", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.Text(), server_default="", nullable=False),
        sa.Column("source_blob", sa.String(length=64), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
        sa.UniqueConstraint("object_id", name=op.f("uq_routing_rules_object_id")),
    )
    # The single compare-and-set row every apply updates.
    state = sa.table(
        "reconciler_state",
        sa.column("id", sa.Integer()),
        sa.column("state_serial", sa.BigInteger()),
        sa.column("conditions", sa.JSON()),
        sa.column("suspended", sa.Boolean()),
    )
    op.bulk_insert(state, [{"id": 1, "state_serial": 0, "conditions": {}, "suspended": False}])


def downgrade() -> None:

    op.drop_table("routing_rules")
    with op.batch_alter_table("routing_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_routing_logs_model_time")

    op.drop_table("routing_logs")
    with op.batch_alter_table("revisions", schema=None) as batch_op:
        batch_op.drop_index("ix_revisions_revision")

    op.drop_table("revisions")
    op.drop_table("reconciler_state")
    op.drop_table("quarantined_versions")
    op.drop_table("protections")
    op.drop_table("object_versions")
    op.drop_table("model_registry")
    with op.batch_alter_table("model_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_model_metrics_model_time")

    op.drop_table("model_metrics")
    with op.batch_alter_table("lifecycle_events", schema=None) as batch_op:
        batch_op.drop_index("ix_lifecycle_events_object")

    op.drop_table("lifecycle_events")
