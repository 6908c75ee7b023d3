"""Table definitions (SQLAlchemy Core), shared by the queries and the migrations.

The product brief's tables keep their names and columns (``model_registry``,
``routing_logs``, ``model_metrics``); the rest is what the reconciler needs:
rules, version history, the apply state row, revisions, lifecycle events,
quarantined versions and protections. JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from reconciler.base import ids

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JsonColumn: Any = JSON().with_variant(JSONB(), "postgresql")


def _id() -> Column[uuid.UUID]:
    return Column("id", Uuid(), primary_key=True, default=ids.uuid7)


def _created() -> Column[Any]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _live_object_table(name: str) -> Table:
    """Live state of one object type: what the router reads, and what drift is judged on.

    ``meta`` and ``payload`` are the live content (an out-of-band edit changes
    them); ``applied_hash`` is the hash of what the reconciler applied, so a
    difference between the two is drift. ``source_path``/``source_blob`` say
    which git blob the object came from, so an unchanged blob need not be
    parsed again.
    """
    return Table(
        name,
        metadata,
        _id(),
        Column("object_id", String(63), nullable=False, unique=True),
        Column("version", String(64), nullable=False),
        Column("meta", JsonColumn, nullable=False),
        Column("payload", JsonColumn, nullable=False),
        Column("applied_hash", String(64), nullable=False),
        Column("source_path", Text, nullable=False, server_default=""),
        Column("source_blob", String(64), nullable=False, server_default=""),
        _created(),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


model_registry = _live_object_table("model_registry")
routing_rules = _live_object_table("routing_rules")

object_versions = Table(
    "object_versions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("object_kind", String(32), nullable=False),
    Column("object_id", String(63), nullable=False),
    Column("version", String(64), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("meta", JsonColumn, nullable=False),
    Column("payload", JsonColumn, nullable=False),
    Column("revision", String(64), nullable=False),
    _created(),
    UniqueConstraint("object_kind", "object_id", "version", name="uq_object_versions_key"),
)

# One row (id = 1): the compare-and-set target of every apply.
reconciler_state = Table(
    "reconciler_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("applied_revision", String(64), nullable=True),
    Column("applied_tree", String(64), nullable=True),
    Column("attempted_revision", String(64), nullable=True),
    Column("state_serial", BigInteger, nullable=False, server_default="0"),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_applied_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("conditions", JsonColumn, nullable=False),
    Column("suspended", Boolean, nullable=False, server_default="0"),
    # Bumped by triggers on every write to the live tables (migration 0002); equal to
    # applied_write_counter while nobody has written since the last apply.
    Column("write_counter", BigInteger, nullable=False, server_default="0"),
    Column("applied_write_counter", BigInteger, nullable=True),
    # Bumped by `grove reconcile --now` to ask a running loop for a cycle (migration 0003).
    Column("trigger_counter", BigInteger, nullable=False, server_default="0"),
    # Bumped by every change of a rollout that changes routing (migration 0007).
    Column("rollout_serial", BigInteger, nullable=False, server_default="0"),
)

# Leader election for reconcile loops: the holder renews before expires_ms (database
# clock, milliseconds since the epoch); taking an expired lease bumps the fencing epoch.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=True),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    Column("expires_ms", BigInteger, nullable=False, server_default="0"),
)

revisions = Table(
    "revisions",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("revision", String(64), nullable=False),
    Column("previous_revision", String(64), nullable=True),
    Column("state_serial", BigInteger, nullable=False),
    Column("changes", Integer, nullable=False),
    Column("summary", JsonColumn, nullable=False),
    Column("forced", Boolean, nullable=False, server_default="0"),
    Column("actor", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_revisions_revision", "revision"),
)

lifecycle_events = Table(
    "lifecycle_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("event_type", String(40), nullable=False),
    Column("object_kind", String(32), nullable=False),
    Column("object_id", String(63), nullable=False),
    Column("version_from", String(64), nullable=True),
    Column("version_to", String(64), nullable=True),
    Column("revision", String(64), nullable=True),
    Column("state_serial", BigInteger, nullable=False),
    Column("forced", Boolean, nullable=False, server_default="0"),
    Column("actor", String(200), nullable=False),
    Column("details", JsonColumn, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_lifecycle_events_object", "object_kind", "object_id"),
)

quarantined_versions = Table(
    "quarantined_versions",
    metadata,
    Column("object_kind", String(32), primary_key=True),
    Column("object_id", String(63), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    _created(),
)

protections = Table(
    "protections",
    metadata,
    Column("object_kind", String(32), primary_key=True),
    Column("object_id", String(63), primary_key=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_by", String(200), nullable=False, server_default=""),
    _created(),
)

# API tokens (migration 0005): the secret is stored as a SHA-256 only.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    _created(),
    Column("created_by", String(200), nullable=False, server_default=""),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

# Console sessions (migration 0006): a browser's sign-in, kept on the server. The cookie
# holds a random secret; only its SHA-256 is stored, with the token it was made from
# (a revoked token ends its sessions) and the session's CSRF secret.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("csrf", String(64), nullable=False),
    _created(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_console_sessions_expires", "expires_at"),
)

# The product brief's observability tables (filled by the router).
routing_logs = Table(
    "routing_logs",
    metadata,
    _id(),
    Column("request_id", Uuid(), nullable=False),
    Column("model_id", Text, nullable=False),
    Column("task_type", Text, nullable=False),
    Column("capability_required", Text, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("routing_decision", JsonColumn, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Migration 0004: per-attempt details for metrics.
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("error_kind", String(32), nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("cost_usd", Float, nullable=True),
    # Migration 0007: the version of the model that served the attempt.
    Column("model_version", String(64), nullable=True),
    Index("ix_routing_logs_model_time", "model_id", "timestamp"),
    Index("ix_routing_logs_timestamp", "timestamp"),
    Index("ix_routing_logs_model_version_time", "model_id", "model_version", "timestamp"),
)

# Progressive delivery (migration 0007): one row per canary or post-deploy verification
# of a model version. ``generation`` is the compare-and-set guard of every transition.
rollouts = Table(
    "rollouts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("model_id", String(63), nullable=False),
    Column("mode", String(16), nullable=False),  # canary | verify
    Column("stable_version", String(64), nullable=False),
    Column("canary_version", String(64), nullable=False),
    Column("revision", String(64), nullable=False),
    Column("steps", JsonColumn, nullable=False),
    Column("slo", JsonColumn, nullable=False),
    Column("on_inconclusive", String(16), nullable=False),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("weight", Integer, nullable=False, server_default="0"),
    Column("phase", String(16), nullable=False),
    Column("rollback", String(24), nullable=False, server_default=""),
    Column("rollback_commit", String(64), nullable=True),
    Column("message", Text, nullable=False, server_default=""),
    Column("analysis", JsonColumn, nullable=False),
    Column("generation", BigInteger, nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_rollouts_model", "model_id", "id"),
    Index("ix_rollouts_phase", "phase"),
)

model_metrics = Table(
    "model_metrics",
    metadata,
    _id(),
    Column("model_id", Text, nullable=False),
    Column("metric_type", Text, nullable=False),
    Column("metric_value", Numeric, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_model_metrics_model_time", "model_id", "metric_type", "timestamp"),
)

LIVE_TABLES = {"AIModel": model_registry, "RoutingRule": routing_rules}
