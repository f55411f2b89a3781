"""Outbound status in the services (API.md §9), over the in-memory fakes: bulk resolve and callbacks
record RESOLUTION deliveries in their own transaction, once per delivered ticket, none back to the
system a callback came from, and wake the workers."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from server.domain.auth import SCOPES, Principal
from server.domain.delivery import Delivery, DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.exceptions import NewException, Status
from server.services.exceptions import CallbackReport, ExceptionService
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))


def world():
    uow = FakeUnitOfWorkFactory()
    service = ExceptionService(uow, Clock(NOW))
    wakes: list[int] = []
    service.deliveries_recorded = lambda: wakes.append(1)
    return uow, service, wakes


def delivered_to(uow, eid: str, *tickets: tuple[TargetSystem, str]) -> None:
    """As the workers leave it: DELIVERED deliveries, the last ticket on the exception."""
    with uow(write=True) as u:
        rows = [
            Delivery(
                id=str(uuid.uuid4()),
                tenant_id="tenant-a",
                key=dispatch_key(target, eid, ""),
                exception_id=eid,
                target_system=target,
                queue="",
                state=DeliveryState.DELIVERED,
                created_at=NOW,
                updated_at=NOW,
                actor_id="tok-a",
                external_reference=reference,
            )
            for target, reference in tickets
        ]
        u.deliveries.add_many(rows)
        (e,) = u.exceptions.get_many("tenant-a", [eid]).values()
        target, reference = tickets[-1]
        u.exceptions.update_many([replace(e, external_system=target.value, external_issue_id=reference)])


def resolutions(uow, eid: str) -> list[tuple[str, str | None]]:
    with uow(write=False) as u:
        found = u.deliveries.for_exception("tenant-a", eid)
    return [(d.target_system.value, d.external_reference) for d in found if d.is_resolution]


def test_bulk_resolve_records_one_resolution_per_delivered_ticket_in_its_transaction():
    uow, service, wakes = world()
    first = service.create(A, NewException(transaction_id="t1")).id
    second = service.create(A, NewException(transaction_id="t2")).id
    never = service.create(A, NewException(transaction_id="t3")).id
    delivered_to(uow, first, (TargetSystem.WEBHOOK, "WH-1"), (TargetSystem.JIRA, "OPS-1"))
    delivered_to(uow, second, (TargetSystem.SERVICENOW, "INC0010001"))
    commits = uow.db.commits
    outcome = service.bulk_resolve(A, [first, second, never], "refunded", "")
    assert outcome.succeeded == [first, second, never]
    assert uow.db.commits == commits + 1  # the resolution and its deliveries: one transaction
    assert sorted(resolutions(uow, first)) == [("JIRA", "OPS-1"), ("WEBHOOK", "WH-1")]
    assert resolutions(uow, second) == [("SERVICENOW", "INC0010001")]
    assert resolutions(uow, never) == [] and wakes == [1]


def test_a_callback_from_a_system_is_not_echoed_back_to_it():
    uow, service, wakes = world()
    eid = service.create(A, NewException(transaction_id="t1")).id
    delivered_to(uow, eid, (TargetSystem.WEBHOOK, "WH-1"), (TargetSystem.JIRA, "OPS-1"))
    service.callback(A, eid, CallbackReport("jira", "OPS-1", Status.RESOLVED, resolution_notes="done"))
    assert resolutions(uow, eid) == [("WEBHOOK", "WH-1")] and wakes == [1]
    # An assignment pushes nothing.
    other = service.create(A, NewException(transaction_id="t2")).id
    delivered_to(uow, other, (TargetSystem.JIRA, "OPS-2"))
    service.callback(A, other, CallbackReport("JIRA", "OPS-2", Status.ASSIGNED, assignee="ana"))
    assert resolutions(uow, other) == [] and wakes == [1]
