"""The schema, as SQLAlchemy Core tables. migrations/versions/ must create exactly this
(tests/integration/storage/test_migrations.py compares them)."""

from __future__ import annotations

import sqlalchemy as sa

from server.storage.types import ExactDecimal, UtcDateTime

# Deterministic constraint names, so later migrations can drop/alter them by name on both databases.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Native 16-byte uuid on PostgreSQL (smaller indexes at 1M rows), CHAR(32) hex on SQLite; both read
# back as the canonical lower-case string the domain uses, and both sort like that string.
UuidStr = sa.Uuid(as_uuid=False)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # comma-separated
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex, never plaintext
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
)

exceptions = sa.Table(
    "exceptions",
    metadata,
    sa.Column("id", UuidStr, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("transaction_id", sa.String(255), nullable=False),
    sa.Column("severity", sa.SmallInteger, nullable=False),  # domain Severity value (sorts LOW..CRITICAL)
    sa.Column("status", sa.SmallInteger, nullable=False),  # domain Status value (sorts by lifecycle)
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("amount", ExactDecimal, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("assigned_to", sa.String(255), nullable=True),
    sa.Column("due_at", UtcDateTime, nullable=True),
    sa.Column("external_system", sa.String(32), nullable=True),  # stored upper-case
    sa.Column("external_issue_id", sa.String(255), nullable=True),
    sa.Column("resolution_notes", sa.Text, nullable=True),
    sa.Column("resolution_reason", sa.Text, nullable=True),
    sa.Column("metadata_json", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    # SLA (API.md §8), added by 0005: whether the caller set due_at, and when it was escalated.
    sa.Column("due_at_explicit", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("escalated_at", UtcDateTime, nullable=True),
    # One index per list shape (see repositories/exceptions.py): every index ends in `id` so a
    # keyset page is a single index range scan with no sort, even among equal sort values.
    # Sort-only shapes (no filter, or a filter the planner can check while walking the index):
    sa.Index("ix_exceptions_tenant_created", "tenant_id", "created_at", "id"),
    sa.Index("ix_exceptions_tenant_updated", "tenant_id", "updated_at", "id"),
    sa.Index("ix_exceptions_tenant_severity", "tenant_id", "severity", "id"),
    sa.Index("ix_exceptions_tenant_status", "tenant_id", "status", "id"),
    sa.Index("ix_exceptions_tenant_id", "tenant_id", "id"),  # sort_by=id; the pk alone is not per tenant
    # Selective filters with the default sort (newest first): the work queues people actually open.
    sa.Index("ix_exceptions_tenant_status_created", "tenant_id", "status", "created_at", "id"),
    sa.Index("ix_exceptions_tenant_assignee_created", "tenant_id", "assigned_to", "created_at", "id"),
    sa.Index("ix_exceptions_tenant_external_created", "tenant_id", "external_system", "created_at", "id"),
    # Inbound hooks find the exceptions dispatched to a ticket (0006).
    sa.Index("ix_exceptions_tenant_ticket", "tenant_id", "external_system", "external_issue_id"),
    # SLA (0005): sort_by=due_at; overdue=true walks only unresolved rows (status 4 is RESOLVED);
    # the escalation scheduler seeks a tenant's unresolved, unescalated rows by due date.
    sa.Index("ix_exceptions_tenant_due", "tenant_id", "due_at", "id"),
    sa.Index(
        "ix_exceptions_tenant_open_due",
        "tenant_id",
        "due_at",
        "id",
        sqlite_where=sa.text("status <> 4"),
        postgresql_where=sa.text("status <> 4"),
    ),
    sa.Index(
        "ix_exceptions_tenant_escalation",
        "tenant_id",
        "due_at",
        "id",
        sqlite_where=sa.text("status <> 4 AND escalated_at IS NULL"),
        postgresql_where=sa.text("status <> 4 AND escalated_at IS NULL"),
    ),
)

exception_history = sa.Table(
    "exception_history",
    metadata,
    sa.Column("id", UuidStr, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("exception_id", UuidStr, sa.ForeignKey("exceptions.id"), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor_id", sa.String(64), nullable=False),
    sa.Column("changes", sa.JSON, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_exception_history_tenant_exception", "tenant_id", "exception_id", "created_at", "id"),
)

# Durable delivery (API.md §7, docs/delivery.md): the outbox the dispatch routes write and the
# workers drain; added by 0004, which moved the earlier dispatch records here.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", UuidStr, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    # The dispatch key, dispatch:{TARGET}:{exception_id}[:{queue}]: one delivery per triple.
    sa.Column("key", sa.String(600), nullable=False),
    sa.Column("exception_id", UuidStr, sa.ForeignKey("exceptions.id"), nullable=False),
    sa.Column("target_system", sa.String(32), nullable=False),
    sa.Column("queue", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # domain DeliveryState
    sa.Column("actor_id", sa.String(64), nullable=False),  # the token that dispatched (history)
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
    sa.UniqueConstraint("tenant_id", "key"),
    # A dispatch finds its deliveries by key, the tenant checked on the row (0007).
    sa.Index("ix_deliveries_key", "key"),
    # The workers' claim: due PENDING rows, and IN_FLIGHT rows whose lease expired.
    sa.Index("ix_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_deliveries_leases", "state", "lease_expires_at"),
    # The routes: per exception (oldest first), per tenant newest first, filtered by state.
    sa.Index("ix_deliveries_tenant_exception", "tenant_id", "exception_id", "created_at", "id"),
    sa.Index("ix_deliveries_tenant_created", "tenant_id", "created_at", "id"),
    sa.Index("ix_deliveries_tenant_state_created", "tenant_id", "state", "created_at", "id"),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("delivery_id", UuidStr, sa.ForeignKey("deliveries.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(24), nullable=False),  # domain AttemptOutcome
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

targets = sa.Table(
    "targets",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("target_system", sa.String(32), primary_key=True),
    sa.Column("settings", sa.JSON, nullable=False),  # non-secret fields, e.g. base_url, project_key
    # Write-only fields (tokens, passwords, credentials) as one Fernet token: never stored in clear.
    sa.Column("secrets", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # Deliveries to a paused target wait (API.md §7); added by 0004.
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    # JIRA / SERVICENOW: the id in the configuration's inbound path (API.md §9); added by 0006.
    sa.Column("inbound_hook_id", sa.String(64), nullable=True),
    sa.UniqueConstraint("inbound_hook_id"),
)

# Events an inbound hook applied, by the system's own event id: a repeat is applied once (0006).
inbound_events = sa.Table(
    "inbound_events",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("target_system", sa.String(32), primary_key=True),
    sa.Column("event_id", sa.String(255), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Index("ix_inbound_events_received_at", "received_at"),
)

# Routing rules (API.md §8, docs/routing.md); added by 0005. Conditions and action are small JSON
# documents (server/domain/routing.py reads and writes them); a tenant's priorities are unique.
routing_rules = sa.Table(
    "routing_rules",
    metadata,
    sa.Column("id", UuidStr, primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("conditions", sa.JSON, nullable=False),
    sa.Column("action", sa.JSON, nullable=False),
    sa.Column("auto_dispatch", sa.Boolean, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "priority"),
)

# One row per tenant whose rules ever changed: every rules write bumps `generation` in its
# transaction; each process's rules cache compares it (one primary-key read) before using its copy.
routing_generations = sa.Table(
    "routing_generations",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
)

# SLA policy per tenant (API.md §8); no row: the defaults. Tiers: {"CRITICAL": 24, ...} hours.
sla_policies = sa.Table(
    "sla_policies",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("tiers", sa.JSON, nullable=False),
    sa.Column("escalation_target", sa.String(32), nullable=True),
    sa.Column("escalation_queue", sa.String(255), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("rpc", sa.String(255), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # 'in_progress' | 'completed'
    sa.Column("response", sa.LargeBinary, nullable=True),  # serialized response message
    sa.Column("response_type", sa.String(255), nullable=True),  # its full proto name
    sa.Column("locked_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),  # the purge of expired keys
)

# Per-tenant call counters per minute (server/services/rate_limit.py); a few rows per tenant.
rate_limit_counters = sa.Table(
    "rate_limit_counters",
    metadata,
    sa.Column("tenant_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(32), primary_key=True),
    sa.Column("window_index", sa.BigInteger, primary_key=True, autoincrement=False),  # unix minute
    sa.Column("calls", sa.Integer, nullable=False),
)
