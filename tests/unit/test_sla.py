"""SLA policy (API.md §8) over the in-memory fakes: the seed defaults, custom tiers, validation, due
dates computed on create (single and bulk) unless the caller set one, and the overdue list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.dispatch import TargetSystem
from server.domain.errors import DomainError, FailedPrecondition
from server.domain.exceptions import NewException, Severity, Status
from server.domain.sla import DEFAULT_TIERS
from server.services.exceptions import ExceptionService, ListRequest
from server.services.sla import SlaService
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))


class World:
    def __init__(self) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.sla = SlaService(self.uow, self.clock)
        self.exceptions = ExceptionService(self.uow, self.clock)


@pytest.fixture
def w() -> World:
    return World()


def test_the_defaults_are_the_seed_products_tiers(w):
    policy = w.sla.get(A)
    seed = {Severity.CRITICAL: 24, Severity.HIGH: 72, Severity.MEDIUM: 120, Severity.LOW: 168}
    assert dict(policy.tiers) == seed
    assert policy.escalation_target is None and policy.updated_at is None
    occurred = NOW - timedelta(hours=5)
    for severity, hours in DEFAULT_TIERS.items():
        e = w.exceptions.create(A, NewException("t", severity=severity, occurred_at=occurred))
        assert e.due_at == occurred + timedelta(hours=hours) and not e.due_at_explicit


def test_custom_tiers_apply_to_later_creates_of_that_tenant_only(w):
    policy = w.sla.put(A, [("critical", 4), ("LOW", 500)], "manual", "sla")
    assert dict(policy.tiers) == {**DEFAULT_TIERS, Severity.CRITICAL: 4, Severity.LOW: 500}
    assert (policy.escalation_target, policy.escalation_queue) == (TargetSystem.MANUAL, "sla")
    assert w.sla.get(A) == policy
    created = w.exceptions.batch_create(
        A, [NewException("a", severity=Severity.CRITICAL), NewException("b", severity=Severity.LOW)]
    )
    assert [e.due_at for e in created] == [NOW + timedelta(hours=4), NOW + timedelta(hours=500)]
    other = w.exceptions.create(B, NewException("c", severity=Severity.CRITICAL))
    assert other.due_at == NOW + timedelta(hours=24)


def test_a_due_date_the_caller_sets_is_kept(w):
    due = NOW + timedelta(days=9)
    e = w.exceptions.create(A, NewException("t", severity=Severity.CRITICAL, due_at=due))
    assert e.due_at == due and e.due_at_explicit


def test_policy_validation_names_the_field(w):
    def fields(*args) -> set[str]:
        with pytest.raises(DomainError) as caught:
            w.sla.put(A, *args)
        return {v.field for v in caught.value.violations}

    assert fields([("HIGH", 0)], None, "") == {"tiers[0].due_in_hours"}
    assert fields([("HIGH", 1), ("high", 2)], None, "") == {"tiers[1].severity"}
    assert fields([("SEVERITY_UNSPECIFIED", 2)], None, "") == {"tiers[0].severity"}
    assert fields([], None, "queue") == {"escalation.queue"}
    assert fields([], "", "") == {"escalation.target_system"}
    with pytest.raises(FailedPrecondition) as caught:
        w.sla.put(A, [], "pager", "")
    assert caught.value.reason == "UNSUPPORTED_TARGET_SYSTEM"
    assert w.sla.get(A).updated_at is None  # nothing stored


def test_overdue_lists_unresolved_past_due_most_overdue_first_and_pages(w):
    made = []
    for i in range(7):
        occurred = NOW - timedelta(hours=30 + i)  # CRITICAL: due 24 h later, so overdue by 6 + i h
        item = NewException(f"o{i}", severity=Severity.CRITICAL, occurred_at=occurred)
        made.append(w.exceptions.create(A, item))
    w.exceptions.create(A, NewException("fresh", severity=Severity.CRITICAL))  # due tomorrow
    w.exceptions.bulk_resolve(A, [made[0].id], "fixed", "")
    old = NOW - timedelta(days=3)
    w.exceptions.create(B, NewException("other", severity=Severity.CRITICAL, occurred_at=old))
    seen, cursor = [], ""
    while True:
        page = w.exceptions.list(A, ListRequest(overdue=True, limit=2, cursor=cursor))
        seen += [e.id for e in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == [e.id for e in reversed(made[1:])]
    assert all(e.status is not Status.RESOLVED for e in made[1:])
    by_due = w.exceptions.list(A, ListRequest(sort_by="due_at", sort_order="desc", limit=200)).items
    assert [e.due_at for e in by_due] == sorted((e.due_at for e in by_due), reverse=True)
    assert len(by_due) == 8
