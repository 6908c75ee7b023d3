"""Routing log details: attempt number, failure kind, tokens and cost per call

The product brief's routing_logs columns stay as they are; these columns let
metrics report errors by kind and cost without parsing the decision JSON.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("attempt", "error_kind", "input_tokens", "output_tokens", "cost_usd")


def upgrade() -> None:
    op.add_column(
        "routing_logs", sa.Column("attempt", sa.Integer(), nullable=False, server_default="1")
    )
    op.add_column("routing_logs", sa.Column("error_kind", sa.String(length=32), nullable=True))
    op.add_column("routing_logs", sa.Column("input_tokens", sa.Integer(), nullable=True))
    op.add_column("routing_logs", sa.Column("output_tokens", sa.Integer(), nullable=True))
    op.add_column("routing_logs", sa.Column("cost_usd", sa.Float(), nullable=True))
    op.create_index("ix_routing_logs_timestamp", "routing_logs", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_routing_logs_timestamp", table_name="routing_logs")
    for column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE routing_logs DROP COLUMN {column}")
