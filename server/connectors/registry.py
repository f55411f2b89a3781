"""Which connector serves a tenant's target system."""

from __future__ import annotations

from server.connectors.manual import ManualConnector
from server.domain.dispatch import Connector, TargetSystem
from server.domain.errors import FailedPrecondition


class ConnectorRegistry:
    """MANUAL is always there; other targets exist once a tenant configures them."""

    def __init__(self) -> None:
        self._manual = ManualConnector()

    def resolve(self, tenant_id: str, target: TargetSystem) -> Connector:
        if target is TargetSystem.MANUAL:
            return self._manual
        raise FailedPrecondition(
            f"target system {target.value} is not configured for this tenant", reason="TARGET_NOT_CONFIGURED"
        )
