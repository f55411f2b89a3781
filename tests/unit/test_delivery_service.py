"""DeliveryService over the in-memory fakes (server/services/deliveries.py): reads and pages, retry,
bulk retry and cancel with their INVALID_STATE rules, and record(), the workers' side."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.exceptions import NewException
from server.domain.history import Action
from server.services.deliveries import DeliveryService
from server.services.exceptions import ExceptionService
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))


class World:
    def __init__(self) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.wakes = 0
        self.exceptions = ExceptionService(self.uow, self.clock)
        self.service = DeliveryService(self.uow, clock=self.clock, wake=self._wake)

    def _wake(self) -> None:
        self.wakes += 1

    def add(
        self,
        state: DeliveryState = DeliveryState.PENDING,
        principal: Principal = A,
        target: TargetSystem = TargetSystem.WEBHOOK,
        created_at: datetime = NOW,
        **fields,
    ) -> Delivery:
        eid = self.exceptions.create(principal, NewException("txn")).id
        d = Delivery(
            id=str(uuid.uuid4()),
            tenant_id=principal.tenant_id,
            key=dispatch_key(target, eid, ""),
            exception_id=eid,
            target_system=target,
            queue="",
            state=state,
            created_at=created_at,
            updated_at=created_at,
            actor_id="tok-dispatcher",
            next_attempt_at=created_at if state is DeliveryState.PENDING else None,
            **fields,
        )
        with self.uow(write=True) as u:
            u.deliveries.add_many([d])
        return d

    def stored(self, d: Delivery) -> Delivery:
        with self.uow(write=False) as u:
            return u.deliveries.get(d.tenant_id, d.id)


@pytest.fixture
def world() -> World:
    return World()


# -- retry and cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [DeliveryState.FAILED, DeliveryState.CANCELLED])
def test_retry_makes_a_failed_or_cancelled_delivery_due_now_and_wakes_the_workers(world, state):
    d = world.add(state, attempt_count=5, horizon_at=NOW, last_error="gave up")
    world.clock.now = NOW + timedelta(hours=3)
    got = world.service.retry(A, d.id.upper())
    assert (got.state, got.next_attempt_at, got.horizon_at, got.attempt_count) == (
        DeliveryState.PENDING,
        NOW + timedelta(hours=3),
        None,
        5,
    )
    assert world.stored(d) == replace(got, attempts=())
    assert world.wakes == 1


@pytest.mark.parametrize("state", [DeliveryState.PENDING, DeliveryState.IN_FLIGHT, DeliveryState.DELIVERED])
def test_retry_of_a_delivery_that_has_not_ended_is_invalid_state(world, state):
    d = world.add(state)
    with pytest.raises(FailedPrecondition) as err:
        world.service.retry(A, d.id)
    assert err.value.reason == "INVALID_STATE"
    assert world.stored(d) == d and world.wakes == 0


def test_retry_and_cancel_find_only_the_callers_deliveries(world):
    theirs = world.add(DeliveryState.FAILED, principal=B)
    for call in (world.service.retry, world.service.cancel, world.service.get):
        with pytest.raises(NotFound):
            call(A, theirs.id)
        with pytest.raises(NotFound):
            call(A, str(uuid.uuid4()))
        with pytest.raises(InvalidArgument) as err:
            call(A, "not-an-id")
        assert err.value.violations[0].field == "delivery_id"
    assert world.stored(theirs) == theirs


def test_cancel_stops_a_pending_delivery_only(world):
    pending = world.add(DeliveryState.PENDING)
    world.clock.now = NOW + timedelta(minutes=1)
    got = world.service.cancel(A, pending.id)
    assert (got.state, got.next_attempt_at, got.updated_at) == (
        DeliveryState.CANCELLED,
        None,
        NOW + timedelta(minutes=1),
    )
    assert world.stored(pending).state is DeliveryState.CANCELLED
    for state in (
        DeliveryState.IN_FLIGHT,
        DeliveryState.DELIVERED,
        DeliveryState.FAILED,
        DeliveryState.CANCELLED,
    ):
        d = world.add(state)
        with pytest.raises(FailedPrecondition) as err:
            world.service.cancel(A, d.id)
        assert err.value.reason == "INVALID_STATE"
        assert world.stored(d).state is state
    assert world.wakes == 0


def test_bulk_retry_answers_each_id_in_request_order(world):
    failed, cancelled, delivered, pending = (
        world.add(DeliveryState.FAILED),
        world.add(DeliveryState.CANCELLED),
        world.add(DeliveryState.DELIVERED),
        world.add(DeliveryState.PENDING),
    )
    theirs, missing = world.add(DeliveryState.FAILED, principal=B), str(uuid.uuid4())
    ids = [delivered.id, failed.id.upper(), missing, theirs.id, cancelled.id, pending.id, failed.id]
    outcome = world.service.bulk_retry(A, ids)
    assert outcome.total == 6
    assert outcome.succeeded == [failed.id, cancelled.id]
    assert [(f.exception_id, f.reason) for f in outcome.failed] == [
        (delivered.id, "INVALID_STATE"),
        (missing, "NOT_FOUND"),
        (theirs.id, "NOT_FOUND"),
        (pending.id, "INVALID_STATE"),
    ]
    assert [world.stored(d).state for d in (failed, cancelled, delivered, pending, theirs)] == [
        DeliveryState.PENDING,
        DeliveryState.PENDING,
        DeliveryState.DELIVERED,
        DeliveryState.PENDING,
        DeliveryState.FAILED,
    ]
    assert world.wakes == 1
    nothing = world.service.bulk_retry(A, [delivered.id])
    assert nothing.succeeded == [] and world.wakes == 1  # nothing became due: no wake-up
    with pytest.raises(InvalidArgument) as err:
        world.service.bulk_retry(A, [])
    assert err.value.violations[0].field == "delivery_ids"
    with pytest.raises(InvalidArgument) as err:
        world.service.bulk_retry(A, [failed.id, "junk"])
    assert err.value.violations[0].field == "delivery_ids[1]"


# -- reads --------------------------------------------------------------------------------------------


def test_deliveries_of_an_exception_oldest_first_with_attempts(world):
    first = world.add(DeliveryState.FAILED, target=TargetSystem.JIRA)
    eid = first.exception_id
    second = replace(
        first,
        id=str(uuid.uuid4()),
        key=dispatch_key(TargetSystem.WEBHOOK, eid, "q"),
        target_system=TargetSystem.WEBHOOK,
        queue="q",
        created_at=NOW + timedelta(seconds=1),
    )
    with world.uow(write=True) as u:
        u.deliveries.add_many([second])
        u.deliveries.add_attempts_many(
            [
                (first, Attempt(2, NOW, 5, AttemptOutcome.PERMANENT_ERROR, 400, "no")),
                (first, Attempt(1, NOW, 9, AttemptOutcome.TIMEOUT)),
            ]
        )
    got = world.service.for_exception(A, eid.upper())
    assert [d.id for d in got] == [first.id, second.id]
    assert [a.number for a in got[0].attempts] == [1, 2] and got[1].attempts == ()
    assert world.service.get(A, first.id).attempts == got[0].attempts
    with pytest.raises(NotFound):
        world.service.for_exception(B, eid)  # another tenant's exception
    with pytest.raises(NotFound):
        world.service.for_exception(A, str(uuid.uuid4()))


def test_pages_newest_first_with_a_cursor_and_filters(world):
    made = [
        world.add(
            DeliveryState.FAILED if i % 3 == 0 else DeliveryState.PENDING,
            target=TargetSystem.JIRA if i % 2 else TargetSystem.WEBHOOK,
            created_at=NOW + timedelta(seconds=i // 2),  # pairs share a timestamp: the id breaks ties
        )
        for i in range(9)
    ]
    world.add(principal=B)

    def walk(state: str, target: str, limit: int) -> list[str]:
        seen, cursor = [], ""
        while True:
            page = world.service.page(A, state, target, cursor, limit)
            assert len(page.items) <= limit and page.limit == limit
            seen += [d.id for d in page.items]
            if not page.has_more:
                assert page.next_cursor == ""
                return seen
            cursor = page.next_cursor

    def expected(keep) -> list[str]:
        return [
            d.id
            for d in sorted((d for d in made if keep(d)), key=lambda d: (d.created_at, d.id), reverse=True)
        ]

    for limit in (1, 2, 4, 20):
        assert walk("", "", limit) == expected(lambda d: True)
        assert walk(" failed ", "", limit) == expected(lambda d: d.state is DeliveryState.FAILED)
        assert walk("", "jira", limit) == expected(lambda d: d.target_system is TargetSystem.JIRA)
        assert walk("PENDING", "WEBHOOK", limit) == expected(
            lambda d: d.state is DeliveryState.PENDING and d.target_system is TargetSystem.WEBHOOK
        )
    default = world.service.page(A, "", "", "", 0)
    assert default.limit == 20 and len(default.items) == 9


def test_page_refuses_bad_filters_and_other_queries_cursors(world):
    for _ in range(3):
        world.add(DeliveryState.FAILED)
    cursor = world.service.page(A, "FAILED", "", "", 1).next_cursor
    assert cursor
    with pytest.raises(InvalidArgument) as err:
        world.service.page(A, "", "", cursor, 1)  # a cursor of another filter
    assert err.value.violations[0].field == "cursor"
    with pytest.raises(InvalidArgument) as err:
        world.service.page(A, "SENT", "", "", 1)
    assert err.value.violations[0].field == "state"
    with pytest.raises(InvalidArgument) as err:
        world.service.page(A, "", "", "", 1000)
    assert err.value.violations[0].field == "limit"
    with pytest.raises(FailedPrecondition) as err:
        world.service.page(A, "", "EMAIL", "", 1)
    assert err.value.reason == "UNSUPPORTED_TARGET_SYSTEM"


# -- record(): the workers' side ----------------------------------------------------------------------


def claim(world: World, owner: str = "w1") -> Delivery:
    with world.uow(write=True) as u:
        (claimed,) = u.deliveries.claim_due(
            owner, world.clock(), world.clock() + timedelta(minutes=1), 1, lambda d: True
        )
    return claimed


def test_record_of_a_delivered_attempt_writes_the_ticket_and_dispatch_history_with_the_actor(world):
    d = world.add(DeliveryState.PENDING, target=TargetSystem.JIRA)
    claimed = claim(world)
    world.clock.now = NOW + timedelta(seconds=3)
    done = replace(
        claimed,
        state=DeliveryState.DELIVERED,
        external_reference="REC-12",
        acknowledged=True,
        delivered_at=NOW + timedelta(seconds=2),
        next_attempt_at=None,
        lease_owner=None,
        lease_expires_at=None,
    )
    attempt = Attempt(1, NOW, 2000, AttemptOutcome.DELIVERED, 201)
    assert world.service.record("w1", done, attempt) is True
    stored = world.stored(d)
    assert (stored.state, stored.external_reference, stored.attempts) == (
        DeliveryState.DELIVERED,
        "REC-12",
        (attempt,),
    )
    exception = world.exceptions.get(A, d.exception_id)
    assert (exception.external_system, exception.external_issue_id, exception.updated_at) == (
        "JIRA",
        "REC-12",
        NOW + timedelta(seconds=2),  # when it was delivered
    )
    entry = world.exceptions.history(A, d.exception_id, "", 0).items[-1]
    assert (entry.action, entry.actor_id, entry.created_at) == (
        Action.DISPATCH,
        "tok-dispatcher",  # who dispatched, not the worker
        NOW + timedelta(seconds=2),
    )
    assert entry.changes == {
        "target_system": "JIRA",
        "queue": "",
        "external_reference": "REC-12",
        "delivery_id": d.id,
    }


def test_record_of_a_failed_attempt_writes_no_ticket(world):
    d = world.add(DeliveryState.PENDING)
    claimed = claim(world)
    failed = replace(
        claimed, state=DeliveryState.FAILED, last_error="no", last_reason="TARGET_REJECTED", lease_owner=None
    )
    assert world.service.record("w1", failed, Attempt(1, NOW, 3, AttemptOutcome.PERMANENT_ERROR, 400, "no"))
    assert world.stored(d).state is DeliveryState.FAILED
    assert world.exceptions.get(A, d.exception_id).external_system is None
    assert [h.action for h in world.exceptions.history(A, d.exception_id, "", 0).items] == [Action.CREATE]


def test_record_refuses_when_the_lease_was_lost_and_writes_nothing(world):
    d = world.add(DeliveryState.PENDING)
    claimed = claim(world, "w1")
    world.clock.now = NOW + timedelta(minutes=5)  # w1's lease expired; w2 took the delivery over
    taken = claim(world, "w2")
    assert (taken.lease_owner, taken.attempt_count, taken.outcome_unknown) == ("w2", 2, True)
    late = replace(claimed, state=DeliveryState.DELIVERED, external_reference="LATE-1", lease_owner=None)
    assert world.service.record("w1", late, Attempt(1, NOW, 10, AttemptOutcome.DELIVERED, 201)) is False
    stored = world.stored(d)
    assert (stored.state, stored.lease_owner, stored.external_reference) == (
        DeliveryState.IN_FLIGHT,
        "w2",
        None,
    )
    assert [(a.number, a.outcome) for a in stored.attempts] == [(1, AttemptOutcome.TIMEOUT)]  # the lost one
    assert world.exceptions.get(A, d.exception_id).external_issue_id is None
    assert [h.action for h in world.exceptions.history(A, d.exception_id, "", 0).items] == [Action.CREATE]


def test_latest_reads_committed_state_by_id(world):
    d, theirs = world.add(), world.add(principal=B)
    assert world.service.latest("tenant-a", [d.id, theirs.id, "junk"]) == {d.id: d}
