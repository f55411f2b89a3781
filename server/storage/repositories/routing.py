"""Routing rules per tenant and the tenant's rules generation (see ports.RoutingRuleRepository)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.routing import (
    RoutingRule,
    action_from_json,
    action_to_json,
    conditions_from_json,
    conditions_to_json,
)
from server.storage.tables import routing_generations as g
from server.storage.tables import routing_rules as t

if TYPE_CHECKING:
    from server.domain.ports import RoutingRuleRepository


def _from_row(r: Row[Any]) -> RoutingRule:
    return RoutingRule(
        id=r.id,
        tenant_id=r.tenant_id,
        name=r.name,
        priority=r.priority,
        enabled=r.enabled,
        conditions=conditions_from_json(r.conditions),
        action=action_from_json(r.action),
        auto_dispatch=r.auto_dispatch,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _to_row(rule: RoutingRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "tenant_id": rule.tenant_id,
        "name": rule.name,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "conditions": conditions_to_json(rule.conditions),
        "action": action_to_json(rule.action),
        "auto_dispatch": rule.auto_dispatch,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


class SqlRoutingRuleRepository:
    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def list(self, tenant_id: str) -> list[RoutingRule]:
        rows = self._conn.execute(
            sa.select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.priority, t.c.id)
        )
        return [_from_row(r) for r in rows]

    def get(self, tenant_id: str, rule_id: str) -> RoutingRule | None:
        row = self._conn.execute(sa.select(t).where(t.c.tenant_id == tenant_id, t.c.id == rule_id)).first()
        return _from_row(row) if row is not None else None

    def add(self, rule: RoutingRule) -> None:
        self._conn.execute(sa.insert(t), _to_row(rule))

    def replace(self, rule: RoutingRule) -> bool:
        row = _to_row(rule)
        del row["id"], row["tenant_id"], row["created_at"]
        result = self._conn.execute(
            sa.update(t).where(t.c.tenant_id == rule.tenant_id, t.c.id == rule.id).values(**row)
        )
        return result.rowcount > 0

    def delete(self, tenant_id: str, rule_id: str) -> bool:
        result = self._conn.execute(sa.delete(t).where(t.c.tenant_id == tenant_id, t.c.id == rule_id))
        return result.rowcount > 0

    def generation(self, tenant_id: str) -> int:
        value = self._conn.execute(sa.select(g.c.generation).where(g.c.tenant_id == tenant_id)).scalar()
        return int(value) if value is not None else 0

    def bump_generation(self, tenant_id: str) -> None:
        insert = postgresql.insert(g) if self._conn.dialect.name == "postgresql" else sqlite.insert(g)
        self._conn.execute(
            insert.on_conflict_do_update(
                index_elements=[g.c.tenant_id], set_={"generation": g.c.generation + 1}
            ),
            {"tenant_id": tenant_id, "generation": 1},
        )


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlRoutingRuleRepository) -> RoutingRuleRepository:
        return repository
