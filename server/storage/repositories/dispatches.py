"""Dispatch records, keyed by their deterministic key within a tenant."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.dispatch import DispatchRecord, TargetSystem
from server.storage.tables import dispatches as t

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
    )


class SqlDispatchRepository:
    def __init__(self, connection: Connection, *, lock_rows: bool = False) -> None:
        self._conn = connection
        self._lock_rows = lock_rows  # see SqlExceptionRepository

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
        rows = [
            {
                "tenant_id": r.tenant_id,
                "key": r.key,
                "exception_id": r.exception_id,
                "target_system": TargetSystem(r.target_system).value,
                "queue": r.queue,
                "external_reference": r.external_reference,
                "acknowledged": r.acknowledged,
                "created_at": r.created_at,
                "completed_at": r.completed_at,
            }
            for r in records
        ]
        insert = postgresql.insert(t) if self._conn.dialect.name == "postgresql" else sqlite.insert(t)
        stmt = insert.on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.key],
            set_={name: insert.excluded[name] for name in _OUTCOME},
        )
        self._conn.execute(stmt, rows)
