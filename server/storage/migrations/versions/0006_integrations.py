"""Two-way integrations (API.md §9): webhook signature schemes, inbound hooks and their events.

- WEBHOOK targets configured before this revision were signed `X-Signature-256: sha256=<hex>`;
  they keep that (`signature_scheme: HMAC_SHA256_HEX`) so their receivers go on verifying.
  New configurations default to Standard Webhooks.
- targets.inbound_hook_id: the id in a JIRA or SERVICENOW configuration's inbound path
  (`/v1/hooks/jira/{hook_id}`), unique across tenants: it is how an unauthenticated hook finds
  its tenant.
- ix_exceptions_tenant_ticket: a hook finds the exceptions dispatched to its ticket.
- inbound_events: the events a hook applied, by the system's own event id
  (X-Atlassian-Webhook-Identifier; ServiceNow: sys_id + sys_updated_on), so a repeat is applied once.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.storage.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TARGETS = sa.table(
    "targets",
    sa.column("tenant_id", sa.String),
    sa.column("target_system", sa.String),
    sa.column("settings", sa.JSON),
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_TARGETS.c.tenant_id, _TARGETS.c.settings).where(_TARGETS.c.target_system == "WEBHOOK")
    ).all()
    for tenant_id, settings in rows:
        updated = {**(settings or {}), "signature_scheme": "HMAC_SHA256_HEX"}
        bind.execute(
            sa.update(_TARGETS)
            .where(_TARGETS.c.tenant_id == tenant_id, _TARGETS.c.target_system == "WEBHOOK")
            .values(settings=updated)
        )
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("inbound_hook_id", sa.String(64), nullable=True))
        batch.create_unique_constraint(batch.f("uq_targets_inbound_hook_id"), ["inbound_hook_id"])
    op.create_table(
        "inbound_events",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("target_system", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "target_system", "event_id", name=op.f("pk_inbound_events")),
    )
    op.create_index(op.f("ix_inbound_events_received_at"), "inbound_events", ["received_at"])
    op.create_index(
        "ix_exceptions_tenant_ticket", "exceptions", ["tenant_id", "external_system", "external_issue_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_exceptions_tenant_ticket", table_name="exceptions")
    op.drop_index(op.f("ix_inbound_events_received_at"), table_name="inbound_events")
    op.drop_table("inbound_events")
    with op.batch_alter_table("targets") as batch:
        batch.drop_constraint(batch.f("uq_targets_inbound_hook_id"), type_="unique")
        batch.drop_column("inbound_hook_id")
