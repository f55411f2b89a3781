"""Reconciliation exceptions: batched reads and writes, filtered keyset listing."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from server.domain.exceptions import ReconException, Severity, Status
from server.domain.paging import ExceptionQuery
from server.storage.direct_read import DirectRead
from server.storage.repositories._common import canonical_uuid, canonical_uuids, keyset_after, of_tenant
from server.storage.tables import exceptions as t

if TYPE_CHECKING:
    from server.domain.ports import ExceptionRepository

SORT_COLUMNS: dict[str, sa.Column[Any]] = {
    "created_at": t.c.created_at,
    "updated_at": t.c.updated_at,
    "severity": t.c.severity,
    "status": t.c.status,
    "id": t.c.id,
    "due_at": t.c.due_at,
}

# What update_many rewrites: everything but the identity and the creation facts.
_MUTABLE = (
    "transaction_id",
    "severity",
    "status",
    "reason",
    "amount",
    "currency",
    "source",
    "assigned_to",
    "due_at",
    "external_system",
    "external_issue_id",
    "resolution_notes",
    "resolution_reason",
    "metadata_json",
    "updated_at",
    "occurred_at",
    "due_at_explicit",
    "escalated_at",
)

# executemany UPDATE: the SET clause comes from the parameter keys named like columns; the WHERE
# parameters need names that are not column names.
# By primary key, the tenant checked on the row (of_tenant: never a tenant index walk).
_UPDATE = sa.update(t).where(
    t.c.id == sa.bindparam("b_id"), of_tenant(t.c.tenant_id, sa.bindparam("b_tenant_id"))
)

# The reads every call makes, built once: executing a prebuilt statement binds values, where
# building one per call cost more than the query itself (bench profile, docs/benchmarks.md).
_GET = sa.select(t).where(t.c.id == sa.bindparam("id"), of_tenant(t.c.tenant_id, sa.bindparam("tenant_id")))
_GET_MANY = (
    sa.select(t)
    .where(
        t.c.id.in_(sa.bindparam("ids", expanding=True)), of_tenant(t.c.tenant_id, sa.bindparam("tenant_id"))
    )
    .order_by(t.c.id)  # one lock order when locking: no deadlocks
)
_GET_LOCKED = _GET.with_for_update()
_GET_MANY_LOCKED = _GET_MANY.with_for_update()


def _to_row(e: ReconException) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant_id": e.tenant_id,
        "transaction_id": e.transaction_id,
        "severity": int(e.severity),
        "status": int(e.status),
        "reason": e.reason,
        "amount": e.amount,
        "currency": e.currency,
        "source": e.source,
        "assigned_to": e.assigned_to,
        "due_at": e.due_at,
        # Upper-case so the list filter is an indexed equality, whatever case a caller used.
        "external_system": e.external_system.upper() if e.external_system is not None else None,
        "external_issue_id": e.external_issue_id,
        "resolution_notes": e.resolution_notes,
        "resolution_reason": e.resolution_reason,
        "metadata_json": dict(e.metadata),
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "occurred_at": e.occurred_at,
        "due_at_explicit": e.due_at_explicit,
        "escalated_at": e.escalated_at,
    }


def _from_row(r: Row[Any]) -> ReconException:
    return ReconException(
        id=r.id,
        tenant_id=r.tenant_id,
        transaction_id=r.transaction_id,
        severity=Severity(r.severity),
        status=Status(r.status),
        created_at=r.created_at,
        updated_at=r.updated_at,
        occurred_at=r.occurred_at,
        reason=r.reason,
        amount=r.amount,
        currency=r.currency,
        source=r.source,
        assigned_to=r.assigned_to,
        due_at=r.due_at,
        external_system=r.external_system,
        external_issue_id=r.external_issue_id,
        resolution_notes=r.resolution_notes,
        resolution_reason=r.resolution_reason,
        metadata=dict(r.metadata_json or {}),
        due_at_explicit=r.due_at_explicit,
        escalated_at=r.escalated_at,
    )


_GET_DIRECT = DirectRead(_GET)


class SqlExceptionRepository:
    def __init__(
        self, connection: Connection, *, lock_rows: bool = False, direct_reads: bool = False
    ) -> None:
        self._conn = connection
        # A read-only unit of work outside any transaction may skip SQLAlchemy's execution path
        # for its point reads (storage/direct_read.py).
        self._direct_reads = direct_reads
        # In a write unit of work, reads lock the rows they return (SELECT ... FOR UPDATE on
        # PostgreSQL; SQLite ignores it, BEGIN IMMEDIATE already serialises writers), so two
        # concurrent read-modify-write calls cannot lose an update or reopen a resolved exception.
        self._lock_rows = lock_rows

    def add_many(self, items: list[ReconException]) -> None:
        if items:
            self._conn.execute(sa.insert(t), [_to_row(e) for e in items])

    def get(self, tenant_id: str, exception_id: str) -> ReconException | None:
        wanted = canonical_uuid(exception_id)
        if wanted is None:
            return None
        params = {"tenant_id": tenant_id, "id": wanted}
        if self._direct_reads:
            row = _GET_DIRECT.first(self._conn, params)
        else:
            row = self._conn.execute(_GET_LOCKED if self._lock_rows else _GET, params).first()
        return None if row is None else _from_row(row)

    def get_many(self, tenant_id: str, ids: Iterable[str]) -> dict[str, ReconException]:
        wanted = canonical_uuids(ids)
        if not wanted:
            return {}
        stmt = _GET_MANY_LOCKED if self._lock_rows else _GET_MANY
        return {r.id: _from_row(r) for r in self._conn.execute(stmt, {"tenant_id": tenant_id, "ids": wanted})}

    def find_by_ticket(self, tenant_id: str, system: str, reference: str) -> list[ReconException]:
        """The tenant's exceptions whose ticket is `reference` in `system` (inbound hooks)."""
        rows = self._conn.execute(
            sa.select(t)
            .where(t.c.tenant_id == tenant_id, t.c.external_system == system)
            .where(t.c.external_issue_id == reference)
            .order_by(t.c.id)
        )
        return [_from_row(r) for r in rows]

    def update_many(self, items: list[ReconException]) -> None:
        if not items:
            return
        params = []
        for e in items:
            row = _to_row(e)
            params.append(
                {"b_id": row["id"], "b_tenant_id": row["tenant_id"]} | {k: row[k] for k in _MUTABLE}
            )
        self._conn.execute(_UPDATE, params)

    def list(self, tenant_id: str, query: ExceptionQuery) -> list[ReconException]:
        f = query.filter
        where: list[sa.ColumnElement[bool]] = [t.c.tenant_id == tenant_id]
        if f.status is not None:
            where.append(t.c.status == int(f.status))
        if f.severity is not None:
            where.append(t.c.severity == int(f.severity))
        if f.assigned_to is not None:
            where.append(t.c.assigned_to == f.assigned_to)
        if f.external_system is not None:
            where.append(t.c.external_system == f.external_system.strip().upper())
        if f.date_from is not None:
            where.append(t.c.created_at >= f.date_from)
        if f.date_to is not None:
            where.append(t.c.created_at < f.date_to)
        if f.overdue:
            # Literal, so both planners match the partial index ix_exceptions_tenant_open_due.
            where.append(t.c.status != sa.literal_column(str(int(Status.RESOLVED))))
            where.append(t.c.due_at < (query.now or sa.func.current_timestamp()))
        if query.sort_by == "due_at" and not f.overdue:
            where.append(t.c.due_at.is_not(None))  # no due date: not in a due-date order
        column = SORT_COLUMNS[query.sort_by]
        if query.after is not None:
            where.append(keyset_after(column, t.c.id, query.sort_by, query.after, query.descending))
        keys = [column] if column is t.c.id else [column, t.c.id]
        order = [k.desc() for k in keys] if query.descending else [k.asc() for k in keys]
        stmt = sa.select(t).where(*where).order_by(*order).limit(query.limit + 1)
        return [_from_row(r) for r in self._conn.execute(stmt)]

    def overdue_unescalated(self, tenant_id: str, now: datetime, limit: int) -> builtins.list[ReconException]:
        where = _overdue_unescalated(tenant_id, now)
        stmt = sa.select(t).where(*where).order_by(t.c.due_at, t.c.id).limit(limit)
        if self._lock_rows:
            # Two replicas escalating at once take different rows; a row escalated meanwhile is
            # re-checked under its lock (escalated_at IS NULL) and left out.
            stmt = stmt.with_for_update(skip_locked=True)
        return [_from_row(r) for r in self._conn.execute(stmt)]

    def count_overdue_unescalated(self, tenant_id: str, now: datetime, cap: int) -> int:
        # The inner LIMIT bounds the walk of the partial index (PostgreSQL: an index-only scan).
        inner = sa.select(t.c.id).where(*_overdue_unescalated(tenant_id, now)).limit(cap).subquery()
        return int(self._conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar() or 0)


def _overdue_unescalated(tenant_id: str, now: datetime) -> list[sa.ColumnElement[bool]]:
    # Matches the partial index ix_exceptions_tenant_escalation (literal predicate, see list()).
    return [
        t.c.tenant_id == tenant_id,
        t.c.status != sa.literal_column(str(int(Status.RESOLVED))),
        t.c.escalated_at.is_(None),
        t.c.due_at < now,
    ]


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlExceptionRepository) -> ExceptionRepository:
        return repository
