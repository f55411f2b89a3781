"""Routing rules and SLA (API.md §8): routing rules per tenant and their generation counter; SLA
policies; exceptions learn whether the caller set due_at (those that had one did) and when they were
escalated, with the indexes of the due-date list, the overdue list and the escalation scheduler.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UuidStr = sa.Uuid(as_uuid=False)


def upgrade() -> None:
    op.create_table(
        "routing_rules",
        sa.Column("id", UuidStr, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("auto_dispatch", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
        sa.UniqueConstraint("tenant_id", "priority", name=op.f("uq_routing_rules_tenant_id_priority")),
    )
    op.create_table(
        "routing_generations",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_routing_generations")),
    )
    op.create_table(
        "sla_policies",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("tiers", sa.JSON, nullable=False),
        sa.Column("escalation_target", sa.String(32), nullable=True),
        sa.Column("escalation_queue", sa.String(255), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_sla_policies")),
    )
    # Plain ADD COLUMN on both databases (SQLite's batch mode would copy the table, and the foreign
    # keys of history and deliveries refuse the drop of the old one).
    op.add_column(
        "exceptions", sa.Column("due_at_explicit", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column("exceptions", sa.Column("escalated_at", UtcDateTime, nullable=True))
    # Every due date set before SLA policies existed was the caller's.
    exceptions = sa.table(
        "exceptions", sa.column("due_at", UtcDateTime), sa.column("due_at_explicit", sa.Boolean)
    )
    op.execute(exceptions.update().where(exceptions.c.due_at.is_not(None)).values(due_at_explicit=True))
    op.create_index("ix_exceptions_tenant_due", "exceptions", ["tenant_id", "due_at", "id"])
    open_rows = sa.text("status <> 4")
    op.create_index(
        "ix_exceptions_tenant_open_due",
        "exceptions",
        ["tenant_id", "due_at", "id"],
        sqlite_where=open_rows,
        postgresql_where=open_rows,
    )
    unescalated = sa.text("status <> 4 AND escalated_at IS NULL")
    op.create_index(
        "ix_exceptions_tenant_escalation",
        "exceptions",
        ["tenant_id", "due_at", "id"],
        sqlite_where=unescalated,
        postgresql_where=unescalated,
    )


def downgrade() -> None:
    op.drop_index("ix_exceptions_tenant_escalation", "exceptions")
    op.drop_index("ix_exceptions_tenant_open_due", "exceptions")
    op.drop_index("ix_exceptions_tenant_due", "exceptions")
    # ALTER TABLE ... DROP COLUMN: PostgreSQL, and SQLite since 3.35.
    op.execute("ALTER TABLE exceptions DROP COLUMN escalated_at")
    op.execute("ALTER TABLE exceptions DROP COLUMN due_at_explicit")
    op.drop_table("sla_policies")
    op.drop_table("routing_generations")
    op.drop_table("routing_rules")
