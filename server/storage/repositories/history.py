"""An exception's audit trail, oldest first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from server.domain.history import Action, HistoryEntry
from server.domain.paging import PageAfter
from server.storage.repositories._common import canonical_uuid, keyset_after
from server.storage.tables import exception_history as t

if TYPE_CHECKING:
    from server.domain.ports import HistoryRepository


def _from_row(r: Row[Any]) -> HistoryEntry:
    return HistoryEntry(
        id=r.id,
        tenant_id=r.tenant_id,
        exception_id=r.exception_id,
        action=Action(r.action),
        actor_id=r.actor_id,
        created_at=r.created_at,
        changes=dict(r.changes or {}),
    )


class SqlHistoryRepository:
    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def add_many(self, entries: list[HistoryEntry]) -> None:
        if not entries:
            return
        rows = [
            {
                "id": h.id,
                "tenant_id": h.tenant_id,
                "exception_id": h.exception_id,
                "action": h.action.value,
                "actor_id": h.actor_id,
                "changes": h.changes,
                "created_at": h.created_at,
            }
            for h in entries
        ]
        self._conn.execute(sa.insert(t), rows)

    def list(
        self, tenant_id: str, exception_id: str, after: PageAfter | None, limit: int
    ) -> list[HistoryEntry]:
        """Oldest first by (created_at, id), up to limit + 1; `after.value` is sort_value(entry,
        "created_at") of the previous page's last entry."""
        exception_id_ = canonical_uuid(exception_id)
        if exception_id_ is None:
            return []
        where = [t.c.tenant_id == tenant_id, t.c.exception_id == exception_id_]
        if after is not None:
            where.append(keyset_after(t.c.created_at, t.c.id, "created_at", after, descending=False))
        stmt = sa.select(t).where(*where).order_by(t.c.created_at, t.c.id).limit(limit + 1)
        return [_from_row(r) for r in self._conn.execute(stmt)]


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlHistoryRepository) -> HistoryRepository:
        return repository
