"""DispatchService's rules over the in-memory fakes (API.md §7, docs/delivery.md): MANUAL delivered in
the call's own transaction; external targets recorded as deliveries (the service itself calls
nothing) that the call then waits for, briefly, while a worker (here: another thread) settles them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.connectors.manual import ManualConnector
from server.delivery.schedule import RetrySchedule
from server.delivery.worker import DeliveryWorker, WorkerSettings
from server.domain.auth import SCOPES, Principal
from server.domain.delivery import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryFailed,
    DeliveryState,
)
from server.domain.dispatch import TargetRejected, TargetSystem, dispatch_key, external_marker
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.exceptions import NewException, Status
from server.domain.history import Action
from server.services.deliveries import DeliveryService
from server.services.dispatch import DispatchService, WaitSlots
from server.services.exceptions import ExceptionService
from server.services.targets import TargetService
from tests.unit.fakes import (
    Clock,
    FakeCipher,
    FakeConnectorFactory,
    FakeTarget,
    FakeUnitOfWorkFactory,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
A2 = Principal("tenant-a", "tok-a2", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))
WHSEC = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"  # base64 of 30 bytes
WEBHOOK = {"url": "https://hooks.example/recon", "secret": WHSEC}
SETTLE_TIMEOUT = 15.0  # bounded waits for the background "worker" (never reached when things work)


class CountingSlots(WaitSlots):
    def __init__(self, total: int, per_tenant: int) -> None:
        super().__init__(total, per_tenant)
        self.asked = 0

    def try_take(self, tenant: str) -> bool:
        self.asked += 1
        return super().try_take(tenant)


class World:
    def __init__(self, wait_seconds: float = 0.0, slots: WaitSlots | None = None) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.exceptions = ExceptionService(self.uow, self.clock)
        self.targets = TargetService(self.uow, FakeCipher(), lambda url: None, self.clock)
        self.webhook = FakeTarget(TargetSystem.WEBHOOK)
        self.connectors = FakeConnectorFactory(self.webhook)
        self.wakes = 0
        self.deliveries = DeliveryService(self.uow, clock=self.clock, wake=self._wake)
        self.observed: list[tuple[str, str]] = []
        self.slots = slots or CountingSlots(4, 2)
        self.service = DispatchService(
            self.uow,
            self.targets,
            self.connectors,
            self.deliveries,
            clock=self.clock,
            wait_seconds=wait_seconds,
            wait_slots=self.slots,
            poll_seconds=0.05,
            observe=lambda target, outcome: self.observed.append((target, outcome)),
        )
        self.worker = DeliveryWorker(
            self.uow,
            self.deliveries,
            self.connectors,
            self.targets.config_for,
            RetrySchedule(base_seconds=0.2, max_wait_seconds=1.0),
            WorkerSettings(concurrency=2, attempt_timeout_seconds=2.0, poll_seconds=0.05),
            clock=self.clock,
            name="worker-1",
        )

    def _wake(self) -> None:
        self.wakes += 1

    def make(self, principal: Principal = A) -> str:
        return self.exceptions.create(principal, NewException("txn")).id

    def delivery(self, eid: str, target: TargetSystem, queue: str = "", tenant: str = "tenant-a"):
        key = dispatch_key(target, eid, queue)
        found = [d for d in self.uow.rows.deliveries.values() if (d.tenant_id, d.key) == (tenant, key)]
        if not found:
            return None
        with self.uow(write=False) as u:
            return u.deliveries.get(tenant, found[0].id)

    def set_state(self, delivery_id: str, **changes) -> Delivery:
        with self.uow(write=True) as u:
            (d,) = u.deliveries.get_many("tenant-a", [delivery_id]).values()
            changed = replace(d, **changes)
            u.deliveries.update_many([changed])
        return changed


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def webhook_world() -> World:
    w = World()
    w.targets.put(A, "WEBHOOK", WEBHOOK)
    return w


class Settler:
    """What a delivery worker does, from another thread: once `count` new deliveries are committed,
    claims them (as world.worker) and settles each with `act`. The call under test is waiting
    meanwhile (or, when it should not wait, has answered already)."""

    def __init__(
        self,
        world: World,
        act: Callable[[Delivery], None],
        count: int = 1,
        ready: Callable[[Delivery], bool] = lambda d: d.attempt_count == 0,
    ) -> None:
        self.world = world
        self.ready = ready
        self.act = act
        self.count = count
        self.claimed: list[Delivery] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Settler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(SETTLE_TIMEOUT)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while len(self.claimed) < self.count:
                assert time.monotonic() < deadline, "the deliveries were never committed"
                committed = self.world.uow.rows.deliveries.values()
                if sum(d.state is DeliveryState.PENDING and self.ready(d) for d in committed) >= self.count:
                    try:
                        with self.world.uow(write=True, join=False) as u:
                            self.claimed += u.deliveries.claim_due(
                                self.world.worker.owner, NOW, NOW + timedelta(minutes=1), 100, lambda d: True
                            )
                    except RuntimeError:  # the dispatch call is just releasing its write lock
                        pass
                time.sleep(0.01)
            for d in self.claimed:
                self.act(d)
        except BaseException as exc:  # reported by __exit__
            self.error = exc


def record(world: World, delivery: Delivery, attempt: Attempt) -> None:
    assert world.deliveries.record(world.worker.owner, delivery, attempt)


def delivered(world: World) -> Callable[[Delivery], None]:
    """The real attempt of the worker, against the FakeTarget (which creates a ticket unless cued)."""

    def act(d: Delivery) -> None:
        world.worker.attempt(d)

    return act


# -- MANUAL: delivered at once, in the call's transaction ---------------------------------------------


def test_manual_dispatch_delivers_at_once_with_its_attempt_history_and_ticket(world):
    eid = world.make()
    world.exceptions.bulk_assign(A, [eid], "alice")
    world.clock.now = NOW + timedelta(minutes=1)
    got = world.service.dispatch(A, eid, " manual ", " ops ")
    key = dispatch_key(TargetSystem.MANUAL, eid, "ops")
    reference = ManualConnector.create(key).external_reference
    assert (got.state, got.key, got.external_reference, got.acknowledged, got.attempt_count) == (
        DeliveryState.DELIVERED,
        key,
        reference,
        True,
        1,
    )
    stored = world.delivery(eid, TargetSystem.MANUAL, "ops")
    assert stored == replace(got, attempts=stored.attempts)
    assert stored.attempts == (Attempt(1, NOW + timedelta(minutes=1), 0, AttemptOutcome.DELIVERED),)
    assert (stored.delivered_at, stored.actor_id, stored.next_attempt_at) == (got.updated_at, "tok-a", None)
    exception = world.exceptions.get(A, eid)
    assert (exception.status, exception.assigned_to) == (Status.ASSIGNED, "alice")  # status unchanged
    assert (exception.external_system, exception.external_issue_id, exception.updated_at) == (
        "MANUAL",
        reference,
        NOW + timedelta(minutes=1),
    )
    entry = world.exceptions.history(A, eid, "", 0).items[-1]
    assert (entry.action, entry.actor_id) == (Action.DISPATCH, "tok-a")
    assert entry.changes == {
        "target_system": "MANUAL",
        "queue": "ops",
        "external_reference": reference,
        "delivery_id": got.id,
    }
    assert world.webhook.requests == [] and world.wakes == 0
    assert world.observed == [("MANUAL", "succeeded")]


def test_manual_dispatch_rolls_back_with_the_calls_transaction(world):
    eid = world.make()
    with pytest.raises(RuntimeError, match="later failure"), world.uow.outer(write=True) as outer:
        got = world.service.dispatch(A, eid, "MANUAL", "")
        rows = outer.rows()
        assert got.id in rows.deliveries and (got.id, 1) in rows.delivery_attempts
        assert rows.exceptions[eid].external_system == "MANUAL"
        raise RuntimeError("later failure")
    assert world.uow.rows.deliveries == {} and world.uow.rows.delivery_attempts == {}
    assert world.exceptions.get(A, eid).external_system is None
    assert [h.action for h in world.exceptions.history(A, eid, "", 0).items] == [Action.CREATE]


def test_a_repeat_answers_the_delivered_ticket_and_records_nothing_more(world):
    eid = world.make()
    first = world.service.dispatch(A, eid, "MANUAL", "ops")
    world.clock.now = NOW + timedelta(hours=1)
    assert world.service.dispatch(A2, eid, "manual", "ops") == first
    assert [h.action for h in world.exceptions.history(A, eid, "", 0).items].count(Action.DISPATCH) == 1
    assert world.exceptions.get(A, eid).updated_at == NOW
    assert len(world.uow.rows.delivery_attempts) == 1
    other_queue = world.service.dispatch(A, eid, "MANUAL", "finance")
    assert other_queue.external_reference != first.external_reference and other_queue.id != first.id


def test_a_delivered_then_resolved_exception_still_answers_its_ticket_but_a_new_dispatch_is_refused(world):
    eid = world.make()
    first = world.service.dispatch(A, eid, "MANUAL", "")
    world.exceptions.bulk_resolve(A, [eid], "done", "")
    assert world.service.dispatch(A, eid, "MANUAL", "") == first
    with pytest.raises(FailedPrecondition) as err:
        world.service.dispatch(A, eid, "MANUAL", "elsewhere")
    assert (err.value.reason, err.value.message) == ("INVALID_STATE", "exception is resolved")
    assert world.delivery(eid, TargetSystem.MANUAL, "elsewhere") is None


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
    assert world.uow.rows.deliveries == {}


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
    assert replace(world.delivery(done, TargetSystem.MANUAL), attempts=()) == earlier
    assert world.delivery(fresh, TargetSystem.MANUAL).state is DeliveryState.DELIVERED
    assert world.delivery(theirs, TargetSystem.MANUAL, tenant="tenant-b") is None
    assert world.delivery(resolved, TargetSystem.MANUAL) is None
    assert world.exceptions.get(B, theirs).external_system is None


def test_the_same_key_in_two_tenants_is_two_deliveries(world):
    mine, theirs = world.make(A), world.make(B)
    world.service.dispatch(A, mine, "MANUAL", "")
    world.service.dispatch(B, theirs, "MANUAL", "")
    assert world.delivery(mine, TargetSystem.MANUAL).tenant_id == "tenant-a"
    assert world.delivery(theirs, TargetSystem.MANUAL, tenant="tenant-b").tenant_id == "tenant-b"


# -- external targets: recorded, never called by the service --------------------------------------------


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
    assert world.webhook.requests == [] and world.uow.rows.deliveries == {} and world.wakes == 0


def test_an_external_dispatch_records_a_pending_delivery_and_calls_nothing(webhook_world):
    world = webhook_world
    eid = world.make()
    world.clock.now = NOW + timedelta(seconds=5)
    got = world.service.dispatch(A, eid, "WEBHOOK", "q1")  # wait_seconds=0: answers at once (202)
    assert (got.state, got.attempt_count, got.next_attempt_at, got.actor_id, got.queue) == (
        DeliveryState.PENDING,
        0,
        NOW + timedelta(seconds=5),
        "tok-a",
        "q1",
    )
    assert world.delivery(eid, TargetSystem.WEBHOOK, "q1") == got
    assert world.webhook.requests == []  # the workers call the target, never the request
    assert world.exceptions.get(A, eid).external_system is None
    assert world.wakes == 1
    assert world.slots.asked == 0  # wait_seconds=0: no waiting at all
    assert world.observed == [("WEBHOOK", "DELIVERY_SCHEDULED")]


def test_bulk_external_dispatch_answers_delivery_scheduled_items_in_request_order(webhook_world):
    world = webhook_world
    ids = [world.make() for _ in range(3)]
    missing, theirs = str(uuid.uuid4()), world.make(B)
    world.exceptions.bulk_resolve(A, [ids[2]], "done", "")
    outcome = world.service.bulk_dispatch(A, [ids[0], missing, ids[1], ids[2], theirs], "WEBHOOK", "")
    assert outcome.succeeded == []
    assert [(f.exception_id, f.reason) for f in outcome.failed] == [
        (ids[0], "DELIVERY_SCHEDULED"),
        (missing, "NOT_FOUND"),
        (ids[1], "DELIVERY_SCHEDULED"),
        (ids[2], "INVALID_STATE"),
        (theirs, "NOT_FOUND"),
    ]
    scheduled = [f for f in outcome.failed if f.reason == "DELIVERY_SCHEDULED"]
    for f in scheduled:
        stored = world.delivery(f.exception_id, TargetSystem.WEBHOOK)
        assert (f.delivery_id, f.next_attempt_at, stored.state) == (stored.id, NOW, DeliveryState.PENDING)
    assert len(world.uow.rows.deliveries) == 2 and world.webhook.requests == []
    assert world.wakes == 1


def test_dispatching_again_joins_a_pending_or_in_flight_delivery(webhook_world):
    world = webhook_world
    eid = world.make()
    first = world.service.dispatch(A, eid, "WEBHOOK", "")
    world.clock.now = NOW + timedelta(minutes=1)
    again = world.service.dispatch(A2, eid, "webhook", "")
    assert again == first  # joined: the same delivery, unchanged (still the first caller's)
    with world.uow(write=True) as u:
        (_claimed,) = u.deliveries.claim_due("w", world.clock(), NOW + timedelta(hours=1), 10, lambda d: True)
    in_flight = world.service.dispatch(A, eid, "WEBHOOK", "")
    assert (in_flight.id, in_flight.state, in_flight.lease_owner) == (first.id, DeliveryState.IN_FLIGHT, "w")
    assert len(world.uow.rows.deliveries) == 1 and world.webhook.requests == []
    assert world.observed == [("WEBHOOK", "DELIVERY_SCHEDULED")] * 3


def test_a_delivered_delivery_answers_the_same_ticket(webhook_world):
    world = webhook_world
    eid = world.make()
    first = world.service.dispatch(A, eid, "WEBHOOK", "")
    with world.uow(write=True) as u:
        (claimed,) = u.deliveries.claim_due(
            world.worker.owner, NOW, NOW + timedelta(minutes=1), 1, lambda d: True
        )
    done = world.worker.attempt(claimed)
    assert done.state is DeliveryState.DELIVERED
    wakes = world.wakes
    again = world.service.dispatch(A2, eid, "WEBHOOK", "")
    assert (again.id, again.external_reference, again.state) == (
        first.id,
        "WEBHOOK-1",
        DeliveryState.DELIVERED,
    )
    assert len(world.webhook.tickets) == 1 and world.wakes == wakes  # nothing new to deliver
    outcome = world.service.bulk_dispatch(A, [eid], "WEBHOOK", "")
    assert (outcome.succeeded, outcome.failed) == ([eid], [])


@pytest.mark.parametrize("ended", [DeliveryState.FAILED, DeliveryState.CANCELLED])
def test_dispatching_again_revives_a_failed_or_cancelled_delivery(webhook_world, ended):
    world = webhook_world
    eid = world.make()
    first = world.service.dispatch(A, eid, "WEBHOOK", "")
    world.set_state(
        first.id,
        state=ended,
        attempt_count=3,
        next_attempt_at=None,
        horizon_at=NOW + timedelta(days=1),
        last_error="gave up",
        last_reason="TARGET_UNAVAILABLE",
    )
    world.clock.now = NOW + timedelta(hours=2)
    revived = world.service.dispatch(A2, eid, "WEBHOOK", "")
    assert (revived.id, revived.state, revived.next_attempt_at, revived.horizon_at) == (
        first.id,
        DeliveryState.PENDING,
        NOW + timedelta(hours=2),
        None,
    )
    assert (revived.actor_id, revived.attempt_count) == ("tok-a2", 3)  # the new caller; attempts kept
    stored = world.delivery(eid, TargetSystem.WEBHOOK)
    assert (stored.state, stored.actor_id, stored.next_attempt_at) == (
        DeliveryState.PENDING,
        "tok-a2",
        NOW + timedelta(hours=2),
    )
    assert len(world.uow.rows.deliveries) == 1 and world.wakes == 2


def test_an_external_dispatch_inside_a_begun_transaction_answers_at_once_and_rolls_back_with_it():
    world = World(wait_seconds=30)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid, other = world.make(), world.make()
    with pytest.raises(RuntimeError, match="later failure"), world.uow.outer(write=True) as outer:
        world.exceptions.bulk_assign(A, [other], "alice")  # begins the call's transaction
        assert world.uow.in_transaction()
        got = world.service.dispatch(A, eid, "WEBHOOK", "")
        assert got.state is DeliveryState.PENDING and got.attempt_count == 0
        assert got.id in outer.rows().deliveries  # joined the call's transaction
        assert world.uow.rows.deliveries == {}  # nothing committed: no worker could see it yet
        raise RuntimeError("later failure")
    assert world.slots.asked == 0  # it never waited (waiting would hold the transaction)
    assert world.uow.rows.deliveries == {} and world.webhook.requests == []
    assert world.exceptions.get(A, other).status is Status.OPEN


def test_an_outer_unit_of_work_that_has_not_begun_does_not_hold_the_deliveries_back(webhook_world):
    world = webhook_world
    eid = world.make()
    with pytest.raises(RuntimeError, match="later failure"), world.uow.outer(write=True):
        assert not world.uow.in_transaction()
        got = world.service.dispatch(A, eid, "WEBHOOK", "")
        raise RuntimeError("later failure")
    # Committed on their own before the call could wait: a keyed retry joins the same delivery.
    assert world.delivery(eid, TargetSystem.WEBHOOK) == got


# -- waiting for first outcomes -------------------------------------------------------------------------


def test_the_call_waits_for_a_delivery_settled_meanwhile():
    world = World(wait_seconds=SETTLE_TIMEOUT)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    with Settler(world, delivered(world)):
        got = world.service.dispatch(A, eid, "WEBHOOK", "")
    assert (got.state, got.external_reference, got.acknowledged) == (
        DeliveryState.DELIVERED,
        "WEBHOOK-1",
        True,
    )
    assert world.exceptions.get(A, eid).external_issue_id == "WEBHOOK-1"
    assert world.slots.waiting() == 0  # its slot was given back
    assert world.observed == [("WEBHOOK", "succeeded")]


def test_a_bulk_call_waits_for_every_item_and_answers_each_outcome():
    world = World(wait_seconds=SETTLE_TIMEOUT)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    ok, refused = world.make(), world.make()
    world.webhook.cue(
        external_marker(TargetSystem.WEBHOOK, refused, ""), TargetRejected("bad payload", http_status=422)
    )
    with Settler(world, delivered(world), count=2):
        outcome = world.service.bulk_dispatch(A, [refused, ok], "WEBHOOK", "")
    assert outcome.succeeded == [ok]
    (failure,) = outcome.failed
    stored = world.delivery(refused, TargetSystem.WEBHOOK)
    assert (failure.exception_id, failure.reason, failure.error, failure.delivery_id) == (
        refused,
        "TARGET_REJECTED",
        "bad payload",
        stored.id,
    )
    assert stored.state is DeliveryState.FAILED
    assert sorted(world.observed) == [("WEBHOOK", "TARGET_REJECTED"), ("WEBHOOK", "succeeded")]


def test_a_single_dispatch_refused_meanwhile_raises_the_targets_reason():
    world = World(wait_seconds=SETTLE_TIMEOUT)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    world.webhook.cue(external_marker(TargetSystem.WEBHOOK, eid, ""), TargetRejected("no such project"))
    with Settler(world, delivered(world)), pytest.raises(DeliveryFailed) as err:
        world.service.dispatch(A, eid, "WEBHOOK", "")
    assert (err.value.reason, err.value.message) == ("TARGET_REJECTED", "no such project")
    assert err.value.delivery.id == world.delivery(eid, TargetSystem.WEBHOOK).id


def test_a_revived_delivery_is_waited_for_until_its_next_attempt():
    world = World(wait_seconds=SETTLE_TIMEOUT)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    first = Delivery(
        str(uuid.uuid4()),
        "tenant-a",
        dispatch_key(TargetSystem.WEBHOOK, eid, ""),
        eid,
        TargetSystem.WEBHOOK,
        "",
        DeliveryState.FAILED,
        NOW,
        NOW,
        "tok-a",
        attempt_count=3,
        last_error="gave up",
    )
    with world.uow(write=True) as u:
        u.deliveries.add_many([first])
    with Settler(world, delivered(world), ready=lambda d: d.attempt_count == 3):
        got = world.service.dispatch(A2, eid, "WEBHOOK", "")
    # Its earlier attempts are not this round's outcome: the call waited for the new attempt.
    assert (got.id, got.state, got.attempt_count) == (first.id, DeliveryState.DELIVERED, 4)
    (dispatched,) = [h for h in world.exceptions.history(A, eid, "", 0).items if h.action is Action.DISPATCH]
    assert dispatched.actor_id == "tok-a2"  # the caller who revived it
    assert world.observed == [("WEBHOOK", "succeeded")]


def test_the_wait_ends_at_the_first_outcome_a_scheduled_retry():
    world = World(wait_seconds=SETTLE_TIMEOUT)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    answered = threading.Event()
    retry_at = NOW + timedelta(seconds=30)

    def retry_then_deliver(d: Delivery) -> None:
        record(
            world,
            replace(
                d,
                state=DeliveryState.PENDING,
                next_attempt_at=retry_at,
                lease_owner=None,
                lease_expires_at=None,
                last_error="503 Service Unavailable",
                last_reason="TARGET_UNAVAILABLE",
            ),
            Attempt(d.attempt_count, NOW, 10, AttemptOutcome.RETRYABLE_ERROR, 503, "503 Service Unavailable"),
        )
        # A call still waiting after the first outcome would see this delivery succeed.
        if not answered.wait(5):
            claimed = world.set_state(d.id, state=DeliveryState.IN_FLIGHT, lease_owner=world.worker.owner)
            record(
                world,
                replace(claimed, state=DeliveryState.DELIVERED, external_reference="late"),
                Attempt(2, NOW, 1, AttemptOutcome.DELIVERED),
            )

    with Settler(world, retry_then_deliver):
        got = world.service.dispatch(A, eid, "WEBHOOK", "")
        answered.set()
    assert (got.state, got.attempt_count, got.next_attempt_at, got.last_error) == (
        DeliveryState.PENDING,
        1,
        retry_at,
        "503 Service Unavailable",
    )
    assert world.observed == [("WEBHOOK", "DELIVERY_SCHEDULED")]


def test_the_wait_is_bounded_by_wait_seconds():
    world = World(wait_seconds=0.3)
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    eid = world.make()
    got = world.service.dispatch(A, eid, "WEBHOOK", "")  # nobody delivers it
    assert (got.state, got.attempt_count) == (DeliveryState.PENDING, 0)
    assert world.slots.asked == 1 and world.slots.waiting() == 0


def test_wait_slots_cap_waiting_calls_in_all_and_per_tenant():
    slots = WaitSlots(total=3, per_tenant=2)
    assert [slots.try_take("a"), slots.try_take("a"), slots.try_take("a")] == [True, True, False]
    assert slots.try_take("b") is True
    assert slots.try_take("c") is False  # the total is reached
    assert slots.waiting() == 3
    slots.give_back("a")
    assert (slots.try_take("c"), slots.try_take("b"), slots.waiting()) == (True, False, 3)
    for tenant in ("a", "b", "c"):
        slots.give_back(tenant)
    assert slots.waiting() == 0
    assert [slots.try_take("a"), slots.try_take("a")] == [True, True]


def test_a_call_that_finds_no_wait_slot_answers_at_once():
    world = World(wait_seconds=SETTLE_TIMEOUT, slots=CountingSlots(total=2, per_tenant=1))
    world.targets.put(A, "WEBHOOK", WEBHOOK)
    world.targets.put(B, "WEBHOOK", WEBHOOK)
    mine, theirs = world.make(A), world.make(B)
    assert world.slots.try_take("tenant-a")  # another call of tenant A is waiting
    with Settler(world, delivered(world)):
        got = world.service.dispatch(A, mine, "WEBHOOK", "")
    # Answered from what it recorded: had it waited, it would have seen the delivery succeed.
    assert (got.state, got.attempt_count) == (DeliveryState.PENDING, 0)
    assert world.delivery(mine, TargetSystem.WEBHOOK).state is DeliveryState.DELIVERED
    with Settler(world, delivered(world)):
        other = world.service.dispatch(B, theirs, "WEBHOOK", "")  # tenant B has a slot
    assert other.state is DeliveryState.DELIVERED
    assert world.slots.waiting() == 1  # only the slot taken above
