"""SLA policy per tenant: read (the defaults when none is stored) and replace."""

from __future__ import annotations

from server.domain.auth import Principal
from server.domain.ports import UnitOfWorkFactory
from server.domain.sla import SlaPolicy, build_policy, default_policy
from server.services.clock import Clock, utc_now


class SlaService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utc_now) -> None:
        self._uow = uow
        self._clock = clock

    def get(self, principal: Principal) -> SlaPolicy:
        with self._uow(write=False) as uow:
            return uow.sla.get(principal.tenant_id) or default_policy(principal.tenant_id)

    def put(
        self,
        principal: Principal,
        tiers: list[tuple[str, int]],
        escalation_target: str | None,
        escalation_queue: str,
    ) -> SlaPolicy:
        policy = build_policy(principal.tenant_id, tiers, escalation_target, escalation_queue, self._clock())
        with self._uow(write=True) as uow:
            uow.sla.put(policy)
        return policy
