"""Target configurations per tenant. Secrets arrive here already encrypted (services/targets.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.dispatch import TargetSystem
from server.domain.targets import StoredTarget
from server.storage.tables import inbound_events as ev
from server.storage.tables import targets as t

# What a PUT replaces of an existing row (created_at and paused stay).
_REPLACED = ("settings", "secrets", "updated_at", "inbound_hook_id")
# How long an applied inbound event is remembered (repeats come within minutes or hours).
EVENT_MEMORY = timedelta(days=7)

if TYPE_CHECKING:
    from server.domain.ports import TargetRepository


def _from_row(r: Row[Any]) -> StoredTarget:
    return StoredTarget(
        tenant_id=r.tenant_id,
        target=TargetSystem(r.target_system),
        settings=dict(r.settings),
        secrets_ciphertext=r.secrets,
        created_at=r.created_at,
        updated_at=r.updated_at,
        paused=r.paused,
        inbound_hook_id=r.inbound_hook_id,
    )


class SqlTargetRepository:
    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def get(self, tenant_id: str, target: TargetSystem) -> StoredTarget | None:
        row = self._conn.execute(
            sa.select(t).where(t.c.tenant_id == tenant_id, t.c.target_system == target.value)
        ).first()
        return _from_row(row) if row is not None else None

    def list(self, tenant_id: str) -> list[StoredTarget]:
        rows = self._conn.execute(sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.target_system))
        return [_from_row(r) for r in rows]

    def put(self, stored: StoredTarget) -> None:
        row = {
            "tenant_id": stored.tenant_id,
            "target_system": stored.target.value,
            "settings": dict(stored.settings),
            "secrets": stored.secrets_ciphertext,
            "created_at": stored.created_at,
            "updated_at": stored.updated_at,
            "inbound_hook_id": stored.inbound_hook_id,
        }
        insert = postgresql.insert(t) if self._conn.dialect.name == "postgresql" else sqlite.insert(t)
        self._conn.execute(
            insert.on_conflict_do_update(
                index_elements=[t.c.tenant_id, t.c.target_system],
                set_={name: insert.excluded[name] for name in _REPLACED},
            ),
            row,
        )

    def set_paused(self, tenant_id: str, target: TargetSystem, paused: bool) -> bool:
        """False when the target is not configured."""
        result = self._conn.execute(
            sa.update(t)
            .where(t.c.tenant_id == tenant_id, t.c.target_system == target.value)
            .values(paused=paused)
        )
        return result.rowcount > 0

    def by_hook_id(self, hook_id: str) -> StoredTarget | None:
        row = self._conn.execute(sa.select(t).where(t.c.inbound_hook_id == hook_id)).first()
        return _from_row(row) if row is not None else None

    def record_inbound_event(
        self, tenant_id: str, target: TargetSystem, event_id: str, now: datetime
    ) -> bool:
        insert = postgresql.insert(ev) if self._conn.dialect.name == "postgresql" else sqlite.insert(ev)
        row = dict(tenant_id=tenant_id, target_system=target.value, event_id=event_id, received_at=now)
        # RETURNING rather than rowcount: psycopg reports -1 for INSERT ... ON CONFLICT.
        inserted = self._conn.execute(insert.on_conflict_do_nothing().returning(ev.c.event_id), row).first()
        self._conn.execute(
            sa.delete(ev).where(
                ev.c.tenant_id == tenant_id,
                ev.c.target_system == target.value,
                ev.c.received_at < now - EVENT_MEMORY,
            )
        )
        return inserted is not None

    def delete(self, tenant_id: str, target: TargetSystem) -> bool:
        result = self._conn.execute(
            sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.target_system == target.value)
        )
        return result.rowcount > 0


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlTargetRepository) -> TargetRepository:
        return repository
