"""Deliveries found by their key without the tenant as the way in.

- ix_deliveries_key: a dispatch looks its deliveries up by key (`dispatch:{TARGET}:{exception_id}...`)
  and checks the tenant on each row found. Through the (tenant_id, key) constraint alone PostgreSQL
  may walk any index that starts with the tenant instead, whenever its statistics make the tenant
  look rare (a table not yet analyzed, a tenant newer than the last ANALYZE), reading every delivery
  of the tenant (docs/benchmarks.md "Lookups by primary key"). The constraint stays: it is what makes
  a key unique per tenant.

Building the index blocks writes to deliveries while it runs (seconds per million rows).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_deliveries_key"), "deliveries", ["key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_deliveries_key"), table_name="deliveries")
