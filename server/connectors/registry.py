"""Which connector serves a tenant's target system, built from the tenant's configuration."""

from __future__ import annotations

from typing import Protocol

from server.connectors.http import HttpSettings, TargetHttp, build_client
from server.connectors.jira import JiraConnector
from server.connectors.manual import ManualConnector
from server.connectors.resilience import Breakers, Resilience, RetryPolicy
from server.connectors.servicenow import ServiceNowConnector
from server.connectors.ssrf import AddressPolicy
from server.connectors.webhook import WebhookConnector
from server.domain.dispatch import Connector, TargetSystem
from server.domain.errors import FailedPrecondition
from server.domain.targets import TargetConfig


class _HttpConnectorClass(Protocol):
    """A connector class that calls out over HTTP: its `external` flag and its constructor."""

    @property
    def external(self) -> bool: ...

    def __call__(self, config: TargetConfig, http: TargetHttp) -> Connector: ...


_HTTP_CONNECTORS: dict[TargetSystem, _HttpConnectorClass] = {
    TargetSystem.JIRA: JiraConnector,
    TargetSystem.SERVICENOW: ServiceNowConnector,
    TargetSystem.WEBHOOK: WebhookConnector,
}


class ConnectorRegistry:
    """MANUAL is always there; other targets exist once a tenant configures them. Connectors are
    cheap per call; what they share (HTTP client, breakers) lives in `http`, one per process."""

    def __init__(self, http: TargetHttp | None = None) -> None:
        self._manual = ManualConnector()
        self._http = http

    @classmethod
    def from_settings(
        cls,
        policy: AddressPolicy,
        http: HttpSettings,
        retry: RetryPolicy,
        breaker_failures: int,
        breaker_reset_seconds: float,
    ) -> ConnectorRegistry:
        resilience = Resilience(retry, Breakers(breaker_failures, breaker_reset_seconds))
        return cls(TargetHttp(build_client(http, policy), resilience))

    def is_local(self, target: TargetSystem) -> bool:
        connector = self._manual if target is TargetSystem.MANUAL else _HTTP_CONNECTORS[target]
        return not connector.external

    def build(self, target: TargetSystem, config: TargetConfig | None) -> Connector:
        if target is TargetSystem.MANUAL:
            return self._manual
        if config is None or self._http is None:
            raise FailedPrecondition(
                f"target system {target.value} is not configured for this tenant",
                reason="TARGET_NOT_CONFIGURED",
            )
        return _HTTP_CONNECTORS[target](config, self._http)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
