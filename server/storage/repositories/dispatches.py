"""Dispatch records, keyed by their deterministic key within a tenant, and the claims on pending ones."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.dispatch import DispatchRecord, TargetSystem
from server.storage.tables import dispatches as t

if TYPE_CHECKING:
    from server.domain.ports import DispatchRepository

# A record may be written twice: pending before the call to the target, completed after it (or a
# retry completes a pending record left by a crash). Only the outcome changes; identity and
# created_at stay those of the first write.
_OUTCOME = ("external_reference", "acknowledged", "completed_at")


def _from_row(r: Row[Any]) -> DispatchRecord:
    return DispatchRecord(
        key=r.key,
        tenant_id=r.tenant_id,
        exception_id=r.exception_id,
        target_system=TargetSystem(r.target_system),
        queue=r.queue,
        created_at=r.created_at,
        external_reference=r.external_reference,
        acknowledged=r.acknowledged,
        completed_at=r.completed_at,
        claim_id=r.claim_id,
        claimed_at=r.claimed_at,
        attempts=r.attempts,
    )


def _to_row(r: DispatchRecord) -> dict[str, Any]:
    return {
        "tenant_id": r.tenant_id,
        "key": r.key,
        "exception_id": r.exception_id,
        "target_system": TargetSystem(r.target_system).value,
        "queue": r.queue,
        "external_reference": r.external_reference,
        "acknowledged": r.acknowledged,
        "created_at": r.created_at,
        "completed_at": r.completed_at,
        "claim_id": r.claim_id,
        "claimed_at": r.claimed_at,
        "attempts": r.attempts,
    }


class SqlDispatchRepository:
    def __init__(self, connection: Connection, *, lock_rows: bool = False) -> None:
        self._conn = connection
        self._lock_rows = lock_rows  # see SqlExceptionRepository

    def _insert(self):
        return postgresql.insert(t) if self._conn.dialect.name == "postgresql" else sqlite.insert(t)

    def get_many(self, tenant_id: str, keys: Iterable[str]) -> dict[str, DispatchRecord]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        stmt = sa.select(t).where(t.c.tenant_id == tenant_id, t.c.key.in_(wanted))
        if self._lock_rows:
            stmt = stmt.order_by(t.c.key).with_for_update()
        return {r.key: _from_row(r) for r in self._conn.execute(stmt)}

    def add_many(self, records: list[DispatchRecord]) -> None:
        """Inserts, or completes an existing record with the same (tenant, key): an upsert, in one
        executemany."""
        if not records:
            return
        insert = self._insert()
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.key],
            set_={name: insert.excluded[name] for name in (*_OUTCOME, "claim_id")},
        )
        self._conn.execute(stmt, [_to_row(r) for r in records])

    def claim(
        self, records: list[DispatchRecord], claim_id: str, now: datetime, stale_before: datetime
    ) -> dict[str, DispatchRecord]:
        if not records:
            return {}
        tenant_id = records[0].tenant_id
        keys = [r.key for r in records]
        rows = [{**_to_row(r), "claim_id": claim_id, "claimed_at": now, "attempts": 1} for r in records]
        # Whoever inserts first owns a new key; ON CONFLICT DO NOTHING makes concurrent claimers
        # (other calls, other replicas) lose quietly instead of failing.
        insert = self._insert().on_conflict_do_nothing(index_elements=[t.c.tenant_id, t.c.key])
        self._conn.execute(insert, rows)
        # Existing pending rows whose attempt gave up (no claim) or died (claim too old). The WHERE
        # is re-checked on the locked row, so of two concurrent takers only one matches.
        self._conn.execute(
            sa.update(t)
            .where(
                t.c.tenant_id == tenant_id,
                t.c.key.in_(keys),
                t.c.completed_at.is_(None),
                t.c.claim_id.is_distinct_from(claim_id),
                sa.or_(t.c.claim_id.is_(None), t.c.claimed_at < stale_before),
            )
            .values(claim_id=claim_id, claimed_at=now, attempts=t.c.attempts + 1)
        )
        return self.get_many(tenant_id, keys)

    def complete(self, tenant_id: str, claim_id: str, outcomes: list[DispatchRecord]) -> None:
        if not outcomes:
            return
        stmt = (
            sa.update(t)
            .where(
                t.c.tenant_id == sa.bindparam("b_tenant_id"),
                t.c.key == sa.bindparam("b_key"),
                t.c.completed_at.is_(None),
            )
            .values(
                external_reference=sa.bindparam("b_reference"),
                acknowledged=sa.bindparam("b_acknowledged"),
                completed_at=sa.bindparam("b_completed_at"),
                claim_id=None,
            )
        )
        self._conn.execute(
            stmt,
            [
                {
                    "b_tenant_id": tenant_id,
                    "b_key": r.key,
                    "b_reference": r.external_reference,
                    "b_acknowledged": r.acknowledged,
                    "b_completed_at": r.completed_at,
                }
                for r in outcomes
            ],
        )

    def release(self, tenant_id: str, claim_id: str, keys: list[str], *, forget: bool) -> None:
        if not keys:
            return
        mine = sa.and_(
            t.c.tenant_id == tenant_id,
            t.c.key.in_(keys),
            t.c.claim_id == claim_id,
            t.c.completed_at.is_(None),
        )
        if forget:
            self._conn.execute(sa.delete(t).where(mine))
        else:
            self._conn.execute(sa.update(t).where(mine).values(claim_id=None))


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlDispatchRepository) -> DispatchRepository:
        return repository
