"""An exception's audit trail: who changed what, and when."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Action(enum.StrEnum):
    CREATE = "CREATE"
    ASSIGN = "ASSIGN"
    RESOLVE = "RESOLVE"
    DISPATCH = "DISPATCH"
    CALLBACK = "CALLBACK"
    ROUTE = "ROUTE"  # a routing rule chose the target (and maybe assignee, severity): API.md §8
    ESCALATE = "ESCALATE"  # overdue: dispatched to the SLA policy's escalation target


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    tenant_id: str
    exception_id: str
    action: Action
    actor_id: str
    created_at: datetime
    changes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def record(
        cls,
        tenant_id: str,
        exception_id: str,
        action: Action,
        actor_id: str,
        now: datetime,
        changes: dict[str, Any],
    ) -> HistoryEntry:
        return cls(str(uuid.uuid4()), tenant_id, exception_id, action, actor_id, now, changes)


def change(before: Any, after: Any) -> dict[str, Any]:
    return {"from": before, "to": after}
