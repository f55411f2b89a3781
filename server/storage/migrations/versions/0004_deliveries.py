"""Durable delivery (API.md §7): deliveries and their attempts replace the dispatch records; targets
can be paused.

Existing dispatch records move over: a completed one becomes a DELIVERED delivery, a pending one a
PENDING delivery due now whose outcome is unknown (its worker asks the target before creating).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from server.storage.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UuidStr = sa.Uuid(as_uuid=False)


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", UuidStr, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(600), nullable=False),
        sa.Column("exception_id", UuidStr, nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("attempt_count", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("horizon_at", UtcDateTime, nullable=True),
        sa.Column("outcome_unknown", sa.Boolean, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_reason", sa.String(64), nullable=True),
        sa.Column("external_reference", sa.String(255), nullable=True),
        sa.Column("acknowledged", sa.Boolean, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["exception_id"], ["exceptions.id"], name=op.f("fk_deliveries_exception_id_exceptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("tenant_id", "key", name=op.f("uq_deliveries_tenant_id_key")),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_leases", "deliveries", ["state", "lease_expires_at"])
    op.create_index(
        "ix_deliveries_tenant_exception", "deliveries", ["tenant_id", "exception_id", "created_at", "id"]
    )
    op.create_index("ix_deliveries_tenant_created", "deliveries", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_deliveries_tenant_state_created", "deliveries", ["tenant_id", "state", "created_at", "id"]
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("delivery_id", UuidStr, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_attempts_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("delivery_id", "number", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()))
    _move_dispatch_records()
    op.drop_table("dispatches")


def _move_dispatch_records() -> None:
    connection = op.get_bind()
    old = sa.table(
        "dispatches",
        sa.column("tenant_id", sa.String),
        sa.column("key", sa.String),
        sa.column("exception_id", UuidStr),
        sa.column("target_system", sa.String),
        sa.column("queue", sa.String),
        sa.column("external_reference", sa.String),
        sa.column("acknowledged", sa.Boolean),
        sa.column("created_at", UtcDateTime),
        sa.column("completed_at", UtcDateTime),
        sa.column("attempts", sa.Integer),
    )
    new = sa.table(
        "deliveries",
        sa.column("id", UuidStr),
        sa.column("tenant_id", sa.String),
        sa.column("key", sa.String),
        sa.column("exception_id", UuidStr),
        sa.column("target_system", sa.String),
        sa.column("queue", sa.String),
        sa.column("state", sa.String),
        sa.column("actor_id", sa.String),
        sa.column("attempt_count", sa.Integer),
        sa.column("next_attempt_at", UtcDateTime),
        sa.column("outcome_unknown", sa.Boolean),
        sa.column("external_reference", sa.String),
        sa.column("acknowledged", sa.Boolean),
        sa.column("delivered_at", UtcDateTime),
        sa.column("created_at", UtcDateTime),
        sa.column("updated_at", UtcDateTime),
    )
    now = datetime.now(UTC)
    rows = []
    for r in connection.execute(sa.select(old)):
        done = r.completed_at is not None
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "tenant_id": r.tenant_id,
                "key": r.key,
                "exception_id": r.exception_id,
                "target_system": r.target_system,
                "queue": r.queue,
                "state": "DELIVERED" if done else "PENDING",
                "actor_id": "migration",
                "attempt_count": max(1, r.attempts or 0) if done else (r.attempts or 0),
                "next_attempt_at": None if done else now,
                "outcome_unknown": not done,
                "external_reference": r.external_reference,
                "acknowledged": bool(r.acknowledged),
                "delivered_at": r.completed_at,
                "created_at": r.created_at,
                "updated_at": r.completed_at or r.created_at,
            }
        )
    if rows:
        op.bulk_insert(new, rows)


def downgrade() -> None:
    raise NotImplementedError("0004 moves dispatch records into deliveries; restore a backup to go back")
