"""SLA policies per tenant (see ports.SlaPolicyRepository)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.dispatch import TargetSystem
from server.domain.exceptions import Severity
from server.domain.sla import SlaPolicy
from server.storage.tables import sla_policies as t

if TYPE_CHECKING:
    from server.domain.ports import SlaPolicyRepository


def _from_row(r: Row[Any]) -> SlaPolicy:
    return SlaPolicy(
        tenant_id=r.tenant_id,
        tiers={Severity[name]: int(hours) for name, hours in dict(r.tiers).items()},
        escalation_target=TargetSystem(r.escalation_target) if r.escalation_target else None,
        escalation_queue=r.escalation_queue,
        updated_at=r.updated_at,
    )


class SqlSlaPolicyRepository:
    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def get(self, tenant_id: str) -> SlaPolicy | None:
        row = self._conn.execute(sa.select(t).where(t.c.tenant_id == tenant_id)).first()
        return _from_row(row) if row is not None else None

    def put(self, policy: SlaPolicy) -> None:
        row = {
            "tenant_id": policy.tenant_id,
            "tiers": {s.name: hours for s, hours in sorted(policy.tiers.items(), reverse=True)},
            "escalation_target": policy.escalation_target.value if policy.escalation_target else None,
            "escalation_queue": policy.escalation_queue,
            "updated_at": policy.updated_at,
        }
        insert = postgresql.insert(t) if self._conn.dialect.name == "postgresql" else sqlite.insert(t)
        self._conn.execute(
            insert.on_conflict_do_update(
                index_elements=[t.c.tenant_id],
                set_={name: insert.excluded[name] for name in row if name != "tenant_id"},
            ),
            row,
        )

    def with_escalation(self) -> list[SlaPolicy]:
        rows = self._conn.execute(
            sa.select(t).where(t.c.escalation_target.is_not(None)).order_by(t.c.tenant_id)
        )
        return [_from_row(r) for r in rows]


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(repository: SqlSlaPolicyRepository) -> SlaPolicyRepository:
        return repository
