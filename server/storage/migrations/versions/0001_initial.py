"""Initial schema: tokens, exceptions, history, dispatches, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written by hand to match server/storage/tables.py; test_migrations.py checks that they agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.types import ExactDecimal, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UuidStr = sa.Uuid(as_uuid=False)


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )

    op.create_table(
        "exceptions",
        sa.Column("id", UuidStr, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("amount", ExactDecimal(), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("assigned_to", sa.String(255), nullable=True),
        sa.Column("due_at", UtcDateTime(), nullable=True),
        sa.Column("external_system", sa.String(32), nullable=True),
        sa.Column("external_issue_id", sa.String(255), nullable=True),
        sa.Column("resolution_notes", sa.Text(), nullable=True),
        sa.Column("resolution_reason", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exceptions")),
    )
    for name, columns in (
        ("ix_exceptions_tenant_created", ["tenant_id", "created_at", "id"]),
        ("ix_exceptions_tenant_updated", ["tenant_id", "updated_at", "id"]),
        ("ix_exceptions_tenant_severity", ["tenant_id", "severity", "id"]),
        ("ix_exceptions_tenant_status", ["tenant_id", "status", "id"]),
        ("ix_exceptions_tenant_id", ["tenant_id", "id"]),
        ("ix_exceptions_tenant_status_created", ["tenant_id", "status", "created_at", "id"]),
        ("ix_exceptions_tenant_assignee_created", ["tenant_id", "assigned_to", "created_at", "id"]),
        ("ix_exceptions_tenant_external_created", ["tenant_id", "external_system", "created_at", "id"]),
    ):
        op.create_index(name, "exceptions", columns)

    op.create_table(
        "exception_history",
        sa.Column("id", UuidStr, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("exception_id", UuidStr, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exception_id"],
            ["exceptions.id"],
            name=op.f("fk_exception_history_exception_id_exceptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exception_history")),
    )
    op.create_index(
        "ix_exception_history_tenant_exception",
        "exception_history",
        ["tenant_id", "exception_id", "created_at", "id"],
    )

    op.create_table(
        "dispatches",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(600), nullable=False),
        sa.Column("exception_id", UuidStr, nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("external_reference", sa.String(255), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["exception_id"],
            ["exceptions.id"],
            name=op.f("fk_dispatches_exception_id_exceptions"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_dispatches")),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("rpc", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("response_type", sa.String(255), nullable=True),
        sa.Column("locked_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "rpc", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("dispatches")
    op.drop_table("exception_history")
    op.drop_table("exceptions")
    op.drop_table("tokens")
