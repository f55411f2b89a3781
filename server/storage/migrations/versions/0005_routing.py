"""Routing rules and SLA (API.md §8): routing rules per tenant and their generation counter.

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


def downgrade() -> None:
    op.drop_table("routing_generations")
    op.drop_table("routing_rules")
