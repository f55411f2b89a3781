"""Per-tenant target configuration, and claims on pending dispatches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Written by hand to match server/storage/tables.py; test_migrations.py checks that they agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "targets",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "target_system", name=op.f("pk_targets")),
    )
    # batch_alter_table: SQLite cannot add several columns in one ALTER; batch mode handles both.
    with op.batch_alter_table("dispatches") as batch:
        batch.add_column(sa.Column("claim_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("claimed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("dispatches") as batch:
        batch.drop_column("attempts")
        batch.drop_column("claimed_at")
        batch.drop_column("claim_id")
    op.drop_table("targets")
