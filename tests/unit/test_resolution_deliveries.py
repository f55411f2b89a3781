"""Outbound status rules (server/domain/delivery.py resolution_deliveries): which tickets hear of a
resolution, and that the system it came from is not one of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from server.domain.delivery import Delivery, DeliveryState, resolution_deliveries, resolution_key
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.exceptions import ReconException, Severity, Status

NOW = datetime(2026, 5, 1, tzinfo=UTC)
EID = "5b1e0c1e-0000-4000-8000-000000000001"


def delivered(target: TargetSystem, reference: str | None = "REF-1", queue: str = "", **changes) -> Delivery:
    d = Delivery(
        id=f"d-{target.value}-{queue}",
        tenant_id="t",
        key=dispatch_key(target, EID, queue),
        exception_id=EID,
        target_system=target,
        queue=queue,
        state=DeliveryState.DELIVERED,
        created_at=NOW,
        updated_at=NOW,
        actor_id="tok",
        external_reference=reference,
    )
    return replace(d, **changes)


def resolved() -> ReconException:
    return ReconException(
        id=EID,
        tenant_id="t",
        transaction_id="txn-1",
        severity=Severity.LOW,
        status=Status.RESOLVED,
        created_at=NOW,
        updated_at=NOW,
        occurred_at=NOW,
        resolution_notes="fee refunded",
    )


def test_every_delivered_ticket_but_the_origins_gets_one_resolution_carrying_its_reference():
    tickets = [
        delivered(TargetSystem.JIRA, "OPS-7", queue="OPS"),
        delivered(TargetSystem.SERVICENOW, "INC0010001"),
        delivered(TargetSystem.WEBHOOK, "WH-1"),
        delivered(TargetSystem.MANUAL, "MANUAL-1"),  # no ticket outside to update
        delivered(TargetSystem.JIRA, "OPS-8", queue="FIN", state=DeliveryState.FAILED),  # never made
    ]
    made = resolution_deliveries(resolved(), tickets, None, "tok-2", NOW)
    assert [(d.target_system, d.external_reference, d.key) for d in made] == [
        (TargetSystem.JIRA, "OPS-7", resolution_key(TargetSystem.JIRA, EID, "OPS")),
        (TargetSystem.SERVICENOW, "INC0010001", resolution_key(TargetSystem.SERVICENOW, EID, "")),
        (TargetSystem.WEBHOOK, "WH-1", resolution_key(TargetSystem.WEBHOOK, EID, "")),
    ]
    assert all(d.is_resolution and d.state is DeliveryState.PENDING for d in made)
    assert all(d.next_attempt_at == NOW for d in made)
    assert all(d.actor_id == "tok-2" for d in made)
    # No echo: a resolution that came from JIRA goes to the others only (case-insensitive origin).
    from_jira = resolution_deliveries(resolved(), tickets, "jira", "hook:JIRA", NOW)
    assert [d.target_system for d in from_jira] == [TargetSystem.SERVICENOW, TargetSystem.WEBHOOK]
    # Resolutions are not themselves pushed again.
    assert resolution_deliveries(resolved(), made, None, "tok", NOW) == []
