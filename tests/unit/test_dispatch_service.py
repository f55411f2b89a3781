"""DispatchService's rules over the in-memory fakes: MANUAL end to end, and the record-before-and-
after protocol of external targets against a scripted in-memory target (no network)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from server.connectors.manual import ManualConnector
from server.domain.auth import SCOPES, Principal
from server.domain.dispatch import (
    DispatchRecord,
    TargetRejected,
    TargetSystem,
    dispatch_key,
    external_marker,
)
from server.domain.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, TargetUnavailable
from server.domain.exceptions import NewException, Status
from server.domain.history import Action
from server.services.dispatch import DispatchService
from server.services.exceptions import ExceptionService
from server.services.targets import TargetService
from tests.unit.fakes import (
    LOSE_ANSWER,
    Clock,
    FakeCipher,
    FakeConnectorFactory,
    FakeTarget,
    FakeUnitOfWorkFactory,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))
WEBHOOK = {"url": "https://hooks.example/recon", "secret": "s" * 16}


class World:
    def __init__(self, pool_size: int = 8, batch_size: int = 1) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.exceptions = ExceptionService(self.uow, self.clock)
        self.targets = TargetService(self.uow, FakeCipher(), lambda url: None, self.clock)
        self.webhook = FakeTarget(TargetSystem.WEBHOOK, batch_size)
        self.observed: list[tuple[str, str]] = []
        self.service = DispatchService(
            self.uow,
            self.targets,
            FakeConnectorFactory(self.webhook),
            clock=self.clock,
            pool_size=pool_size,
            claim_timeout=timedelta(minutes=5),
            observe=lambda target, outcome: self.observed.append((target, outcome)),
        )

    def make(self, principal: Principal = A) -> str:
        return self.exceptions.create(principal, NewException("txn")).id

    def record(self, eid: str, target: TargetSystem, queue: str = "", tenant: str = "tenant-a"):
        return self.uow.rows.dispatches.get((tenant, dispatch_key(target, eid, queue)))


@pytest.fixture
def world() -> World:
    return World()


# -- MANUAL: one transaction, nothing leaves the process ------------------------------------------------


def test_manual_dispatch_acknowledges_records_the_ticket_and_keeps_the_status(world):
    eid = world.make()
    world.exceptions.bulk_assign(A, [eid], "alice")
    world.clock.now = NOW + timedelta(minutes=1)
    record = world.service.dispatch(A, eid, " manual ", " ops ")
    key = dispatch_key(TargetSystem.MANUAL, eid, "ops")
    assert record.external_reference == ManualConnector.create(key).external_reference
    assert (record.key, record.acknowledged, record.completed_at, record.claim_id) == (
        key,
        True,
        record.created_at,
        None,
    )
    assert world.record(eid, TargetSystem.MANUAL, "ops") == record
    got = world.exceptions.get(A, eid)
    assert (got.status, got.assigned_to) == (Status.ASSIGNED, "alice")  # dispatch never changes the status
    assert (got.external_system, got.external_issue_id, got.updated_at) == (
        "MANUAL",
        record.external_reference,
        NOW + timedelta(minutes=1),
    )
    entry = world.exceptions.history(A, eid, "", 0).items[-1]
    assert (entry.action, entry.actor_id) == (Action.DISPATCH, "tok-a")
    assert entry.changes == {
        "target_system": "MANUAL",
        "queue": "ops",
        "external_reference": record.external_reference,
    }
    assert world.observed == [("MANUAL", "succeeded")]


def test_a_repeat_answers_the_recorded_ticket_and_records_nothing_more(world):
    eid = world.make()
    first = world.service.dispatch(A, eid, "MANUAL", "ops")
    world.clock.now = NOW + timedelta(hours=1)
    assert world.service.dispatch(A, eid, "manual", "ops") == first
    assert [h.action for h in world.exceptions.history(A, eid, "", 0).items].count(Action.DISPATCH) == 1
    assert world.exceptions.get(A, eid).updated_at == NOW
    other_queue = world.service.dispatch(A, eid, "MANUAL", "finance")
    assert other_queue.external_reference != first.external_reference


def test_a_dispatched_then_resolved_exception_still_answers_its_ticket_but_a_new_dispatch_is_refused(world):
    eid = world.make()
    first = world.service.dispatch(A, eid, "MANUAL", "")
    world.exceptions.bulk_resolve(A, [eid], "done", "")
    assert world.service.dispatch(A, eid, "MANUAL", "") == first
    with pytest.raises(FailedPrecondition) as err:
        world.service.dispatch(A, eid, "MANUAL", "elsewhere")
    assert (err.value.reason, err.value.message) == ("INVALID_STATE", "exception is resolved")
    assert world.record(eid, TargetSystem.MANUAL, "elsewhere") is None


def test_single_dispatch_refusals(world):
    theirs = world.make(B)
    with pytest.raises(NotFound):
        world.service.dispatch(A, theirs, "MANUAL", "")
    with pytest.raises(InvalidArgument) as err:
        world.service.dispatch(A, "nope", "MANUAL", "")
    assert err.value.violations[0].field == "exception_id"
    with pytest.raises(FailedPrecondition) as err:
        world.service.dispatch(A, world.make(), "EMAIL", "")
    assert err.value.reason == "UNSUPPORTED_TARGET_SYSTEM"
    assert world.uow.rows.dispatches == {}


def test_bulk_manual_dispatch_mixed_outcomes_in_request_order(world):
    fresh, done, resolved, theirs, missing = (
        world.make(),
        world.make(),
        world.make(),
        world.make(B),
        str(uuid.uuid4()),
    )
    earlier = world.service.dispatch(A, done, "MANUAL", "")
    world.exceptions.bulk_resolve(A, [resolved], "done", "")
    outcome = world.service.bulk_dispatch(
        A, [missing, done, fresh.upper(), resolved, theirs, fresh], "MANUAL", ""
    )
    assert outcome.total == 5
    assert outcome.succeeded == [done, fresh]
    assert [(f.exception_id, f.reason) for f in outcome.failed] == [
        (missing, "NOT_FOUND"),
        (resolved, "INVALID_STATE"),
        (theirs, "NOT_FOUND"),
    ]
    assert world.record(done, TargetSystem.MANUAL) == earlier
    assert world.record(fresh, TargetSystem.MANUAL).completed
    assert world.record(theirs, TargetSystem.MANUAL, tenant="tenant-b") is None
    assert world.exceptions.get(B, theirs).external_system is None


def test_the_same_key_in_two_tenants_is_two_dispatches(world):
    mine, theirs = world.make(A), world.make(B)
    world.service.dispatch(A, mine, "MANUAL", "")
    world.service.dispatch(B, theirs, "MANUAL", "")
    assert world.record(mine, TargetSystem.MANUAL).tenant_id == "tenant-a"
    assert world.record(theirs, TargetSystem.MANUAL, tenant="tenant-b").tenant_id == "tenant-b"


# -- external targets: claim, call holding nothing, complete or release ------------------------------


def test_an_unconfigured_target_refuses_the_whole_request_before_any_item(world):
    eid = world.make()
    for call in (
        lambda: world.service.dispatch(A, eid, "WEBHOOK", ""),
        lambda: world.service.bulk_dispatch(A, [eid, str(uuid.uuid4())], "webhook", ""),
        lambda: world.service.dispatch(A, eid, "JIRA", ""),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.reason == "TARGET_NOT_CONFIGURED"
    world.targets.put(B, "WEBHOOK", WEBHOOK)  # another tenant's configuration does not count
    with pytest.raises(FailedPrecondition):
        world.service.dispatch(A, eid, "WEBHOOK", "")
    assert world.webhook.requests == [] and world.uow.rows.dispatches == {}


def test_an_external_dispatch_creates_one_ticket_and_completes_its_record(world):
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    record = world.service.dispatch(A, eid, "WEBHOOK", "q1")
    (request,) = world.webhook.requests
    assert (request.marker, request.check_existing) == (
        external_marker(TargetSystem.WEBHOOK, eid, "q1"),
        False,
    )
    assert world.webhook.tickets_for(request.marker) == [world.webhook.tickets[0][1]]
    assert (record.external_reference, record.completed, record.claim_id, record.attempts) == (
        "WEBHOOK-1",
        True,
        None,
        1,
    )
    assert world.exceptions.get(A, eid).external_issue_id == "WEBHOOK-1"
    assert world.service.dispatch(A, eid, "WEBHOOK", "q1") == record  # answered from the record
    assert len(world.webhook.requests) == 1


def test_a_rejection_forgets_the_claim_so_a_retry_starts_afresh(world):
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    world.webhook.cues[external_marker(TargetSystem.WEBHOOK, eid, "")] = TargetRejected("bad payload")
    with pytest.raises(FailedPrecondition) as err:
        world.service.dispatch(A, eid, "WEBHOOK", "")
    assert err.value.reason == "TARGET_REJECTED"
    assert world.record(eid, TargetSystem.WEBHOOK) is None
    assert world.exceptions.get(A, eid).external_system is None
    world.service.dispatch(A, eid, "WEBHOOK", "")
    assert [r.check_existing for r in world.webhook.requests] == [False, False]
    assert world.observed == [("WEBHOOK", "TARGET_REJECTED"), ("WEBHOOK", "succeeded")]


@pytest.mark.parametrize("failure", [LOSE_ANSWER, RuntimeError("connector bug")])
def test_an_unknown_outcome_keeps_the_record_and_the_retry_adopts_the_ticket(world, failure):
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    marker = external_marker(TargetSystem.WEBHOOK, eid, "")
    world.webhook.cues[marker] = failure
    with pytest.raises(TargetUnavailable):
        world.service.dispatch(A, eid, "WEBHOOK", "")
    pending = world.record(eid, TargetSystem.WEBHOOK)
    assert (pending.completed, pending.claim_id, pending.attempts) == (False, None, 1)
    record = world.service.dispatch(A, eid, "WEBHOOK", "")
    assert [r.check_existing for r in world.webhook.requests] == [False, True]
    assert len(world.webhook.tickets_for(marker)) == 1
    assert (record.completed, record.attempts) == (True, 2)
    assert world.exceptions.get(A, eid).external_issue_id == record.external_reference


def test_a_live_claim_of_another_attempt_is_409_until_it_goes_stale(world):
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    key = dispatch_key(TargetSystem.WEBHOOK, eid, "")
    with world.uow(write=True) as u:  # another call's claim, taken a minute ago and still running
        u.dispatches.claim(
            [DispatchRecord(key, "tenant-a", eid, TargetSystem.WEBHOOK, "", NOW)],
            "other-claim",
            NOW - timedelta(minutes=1),
            NOW - timedelta(minutes=6),
        )
    with pytest.raises(Conflict) as err:
        world.service.dispatch(A, eid, "WEBHOOK", "")
    assert (err.value.reason, err.value.retry_after_seconds) == ("DISPATCH_IN_PROGRESS", 241)
    assert world.webhook.requests == []
    world.clock.now = NOW + timedelta(minutes=4, seconds=1)  # the claim is now older than 5 minutes
    record = world.service.dispatch(A, eid, "WEBHOOK", "")
    assert [r.check_existing for r in world.webhook.requests] == [
        True
    ]  # the dead attempt may have created it
    assert (record.completed, record.attempts) == (True, 2)


def test_bulk_external_dispatch_answers_in_request_order_across_batches(world):
    world = World(pool_size=3, batch_size=2)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    ids = [world.make() for _ in range(5)]
    missing = str(uuid.uuid4())
    world.webhook.cues[external_marker(TargetSystem.WEBHOOK, ids[1], "")] = TargetRejected("no")
    outcome = world.service.bulk_dispatch(A, [ids[0], missing, *ids[1:]], "WEBHOOK", "")
    assert outcome.succeeded == [ids[0], *ids[2:]]
    assert [(f.exception_id, f.reason) for f in outcome.failed] == [
        (missing, "NOT_FOUND"),
        (ids[1], "TARGET_REJECTED"),
    ]
    assert [world.exceptions.get(A, i).external_system for i in ids] == [
        "WEBHOOK",
        None,
        "WEBHOOK",
        "WEBHOOK",
        "WEBHOOK",
    ]
    assert len(world.webhook.tickets) == 4


def test_inside_an_open_transaction_every_item_asks_first_and_everything_rolls_back_with_it(world):
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid, other = world.make(), world.make()
    with pytest.raises(RuntimeError, match="later failure"), world.uow.outer(write=True) as outer:
        world.exceptions.bulk_assign(A, [other], "alice")  # begins the call's transaction
        assert world.uow.in_transaction()
        world.service.dispatch(A, eid, "WEBHOOK", "")
        assert outer.rows().dispatches  # visible inside the transaction
        raise RuntimeError("later failure")
    assert [r.check_existing for r in world.webhook.requests] == [True]
    assert world.uow.rows.dispatches == {}
    assert world.exceptions.get(A, eid).external_system is None
    assert world.exceptions.get(A, other).status is Status.OPEN
    assert len(world.webhook.tickets) == 1  # the ticket exists: a retry will find it by its marker
