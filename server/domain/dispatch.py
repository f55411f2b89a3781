"""Dispatching an exception to an external system: target names, keys and outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.domain.errors import FailedPrecondition, Violations
from server.domain.exceptions import ReconException

MAX_NAME = 255


class TargetSystem(enum.StrEnum):
    JIRA = "JIRA"
    SERVICENOW = "SERVICENOW"
    WEBHOOK = "WEBHOOK"
    MANUAL = "MANUAL"


def parse_target_request(target_system: str, queue: str) -> tuple[TargetSystem, str]:
    """Validates the shared `target_system` / `queue` fields of single and bulk dispatch."""
    v = Violations()
    if not target_system.strip():
        v.add("target_system", "is required")
    elif len(target_system) > MAX_NAME:
        v.add("target_system", f"must be at most {MAX_NAME} characters")
    if len(queue) > MAX_NAME:
        v.add("queue", f"must be at most {MAX_NAME} characters")
    v.raise_if_any()
    try:
        return TargetSystem(target_system.strip().upper()), queue.strip()
    except ValueError:
        raise FailedPrecondition(
            f"unsupported target system {target_system.strip()[:40]!r}; "
            f"use one of {', '.join(t.value for t in TargetSystem)}",
            reason="UNSUPPORTED_TARGET_SYSTEM",
        ) from None


def dispatch_key(target: TargetSystem, exception_id: str, queue: str) -> str:
    """Deterministic, so a retried dispatch finds the first one instead of creating a second ticket."""
    key = f"dispatch:{target.value}:{exception_id}"
    return f"{key}:{queue}" if queue else key


@dataclass(frozen=True)
class TicketRef:
    """What a target system answered for one created ticket."""

    external_reference: str
    acknowledged: bool


@dataclass(frozen=True)
class DispatchRecord:
    """One dispatch of one exception to one target (and queue), recorded before and after the call."""

    key: str
    tenant_id: str
    exception_id: str
    target_system: TargetSystem
    queue: str
    created_at: datetime
    external_reference: str | None = None
    acknowledged: bool = False
    completed_at: datetime | None = None

    @property
    def completed(self) -> bool:
        return self.completed_at is not None


class Connector(Protocol):
    """Creates tickets in one external system. Never touches the database."""

    target: TargetSystem

    def create(self, exception: ReconException, queue: str, key: str) -> TicketRef: ...


class ConnectorResolver(Protocol):
    def resolve(self, tenant_id: str, target: TargetSystem) -> Connector:
        """The tenant's configured connector, or FailedPrecondition TARGET_NOT_CONFIGURED."""
        ...
