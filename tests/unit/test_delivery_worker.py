"""DeliveryWorker over the in-memory fakes (server/delivery/worker.py): how each attempt's outcome is
classified and recorded, leases, and the bulkheads of claim_and_start. The targets are FakeTargets
behind a fake connector factory: nothing leaves the process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.delivery.schedule import RetrySchedule
from server.delivery.worker import DeliveryWorker, WorkerSettings, host_key
from server.domain.auth import SCOPES, Principal
from server.domain.delivery import MAX_ERROR, Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import (
    TargetAddressRefused,
    TargetDown,
    TargetRejected,
    TargetSystem,
    TicketRequest,
    dispatch_key,
    external_marker,
)
from server.domain.exceptions import NewException
from server.domain.history import Action
from server.domain.targets import TargetConfig
from server.services.deliveries import DeliveryService
from server.services.exceptions import ExceptionService
from server.services.targets import TargetService
from server.storage.repositories.deliveries import LOST_ATTEMPT
from tests.unit.fakes import (
    LOSE_ANSWER,
    Clock,
    FakeCipher,
    FakeConnectorFactory,
    FakeTarget,
    FakeUnitOfWorkFactory,
)

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))
WHSEC = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"  # base64 of 30 bytes
WEBHOOK_A = {"url": "https://hooks.example/recon", "secret": WHSEC}
WEBHOOK_B = {"url": "https://other.example:8443/in", "secret": WHSEC}
JIRA_A = {"base_url": "https://jira.example/", "email": "ops@example.com", "api_token": "tok-123"}
HORIZON = timedelta(hours=1)
BOUND = 10.0  # bounded waits for attempts on the worker's pool (never reached when things work)


class GatedTarget(FakeTarget):
    """A FakeTarget whose every send waits for a pass: the test lets attempts through one by one
    (the fake database takes one writer at a time, so attempts must not record at once)."""

    def __init__(self, target: TargetSystem) -> None:
        super().__init__(target)
        self.passes = threading.Semaphore(0)
        self.waiting = 0

    def send(self, batch: list[TicketRequest]):
        with self._lock:
            self.waiting += 1
        assert self.passes.acquire(timeout=BOUND), "never let through"
        with self._lock:
            self.waiting -= 1
        return super().send(batch)


class World:
    def __init__(self, *targets: FakeTarget, **settings) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.exceptions = ExceptionService(self.uow, self.clock)
        self.targets = TargetService(self.uow, FakeCipher(), lambda url: None, self.clock)
        self.webhook = FakeTarget(TargetSystem.WEBHOOK)
        self.connectors = FakeConnectorFactory(*(targets or (self.webhook,)))
        self.deliveries = DeliveryService(self.uow, clock=self.clock)
        self.observed: list[tuple[str, str, str]] = []
        values = {"concurrency": 4, "attempt_timeout_seconds": 2.0, "lease_margin_seconds": 1.0}
        values.update(settings)
        self.worker = DeliveryWorker(
            self.uow,
            self.deliveries,
            self.connectors,
            self.targets.config_for,
            RetrySchedule(base_seconds=5, max_wait_seconds=3600, horizon_seconds=HORIZON.total_seconds()),
            WorkerSettings(**values),
            clock=self.clock,
            observe=lambda target, kind, outcome, seconds: self.observed.append((target, kind, outcome)),
            name="w1",
        )
        self.targets.put(A, "WEBHOOK", WEBHOOK_A)

    def dispatched(
        self, principal: Principal = A, target: TargetSystem = TargetSystem.WEBHOOK, **fields
    ) -> Delivery:
        """A delivery as DispatchService records it: PENDING, due now."""
        eid = self.exceptions.create(principal, NewException("txn")).id
        values = {
            "id": str(uuid.uuid4()),
            "tenant_id": principal.tenant_id,
            "key": dispatch_key(target, eid, ""),
            "exception_id": eid,
            "target_system": target,
            "queue": "",
            "state": DeliveryState.PENDING,
            "created_at": self.clock(),
            "updated_at": self.clock(),
            "actor_id": principal.token_id,
            "next_attempt_at": self.clock(),
        }
        values.update(fields)
        d = Delivery(**values)
        with self.uow(write=True) as u:
            u.deliveries.add_many([d])
        return d

    def claim(self, owner: str = "w1") -> Delivery:
        lease = self.clock() + timedelta(seconds=3)
        with self.uow(write=True) as u:
            (claimed,) = u.deliveries.claim_due(owner, self.clock(), lease, 1, lambda d: True)
        return claimed

    def attempt(self) -> Delivery | None:
        """Claims the due delivery and runs one attempt of it, here and now."""
        return self.worker.attempt(self.claim())

    def stored(self, d: Delivery) -> Delivery:
        with self.uow(write=False) as u:
            return u.deliveries.get(d.tenant_id, d.id)

    def marker(self, d: Delivery) -> str:
        return external_marker(d.target_system, d.exception_id, d.queue)


@pytest.fixture
def world():
    w = World()
    yield w
    w.worker.stop(0)


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


# -- outcomes -----------------------------------------------------------------------------------------


def test_a_ticket_delivers_with_the_exception_ticket_and_history(world):
    d = world.dispatched()
    world.clock.now = NOW + timedelta(seconds=1)
    got = world.attempt()
    (request,) = world.webhook.requests
    assert (request.delivery_id, request.marker, request.check_existing) == (d.id, world.marker(d), False)
    assert (got.state, got.external_reference, got.acknowledged, got.delivered_at) == (
        DeliveryState.DELIVERED,
        "WEBHOOK-1",
        True,
        NOW + timedelta(seconds=1),
    )
    stored = world.stored(d)
    assert (stored.state, stored.lease_owner, stored.lease_expires_at, stored.next_attempt_at) == (
        DeliveryState.DELIVERED,
        None,
        None,
        None,
    )
    (attempt,) = stored.attempts
    assert (attempt.number, attempt.started_at, attempt.outcome, attempt.http_status, attempt.error) == (
        1,
        NOW + timedelta(seconds=1),
        AttemptOutcome.DELIVERED,
        201,
        "",
    )
    exception = world.exceptions.get(A, d.exception_id)
    assert (exception.external_system, exception.external_issue_id) == ("WEBHOOK", "WEBHOOK-1")
    (entry,) = [
        h for h in world.exceptions.history(A, d.exception_id, "", 0).items if h.action is Action.DISPATCH
    ]
    assert (entry.actor_id, entry.changes["delivery_id"]) == ("tok-a", d.id)
    assert world.observed == [("WEBHOOK", "dispatch", "DELIVERED")]


@pytest.mark.parametrize(
    ("refusal", "reason", "status"),
    [
        (TargetRejected("project OPS does not exist", http_status=404), "TARGET_REJECTED", 404),
        (TargetAddressRefused("url resolves to a private address"), "TARGET_ADDRESS_NOT_ALLOWED", None),
    ],
)
def test_a_refusal_fails_at_once(world, refusal, reason, status):
    d = world.dispatched()
    world.webhook.cue(world.marker(d), refusal)
    got = world.attempt()
    assert (got.state, got.last_reason, got.last_error, got.next_attempt_at) == (
        DeliveryState.FAILED,
        reason,
        refusal.message,
        None,
    )
    (attempt,) = world.stored(d).attempts
    assert (attempt.outcome, attempt.http_status, attempt.error) == (
        AttemptOutcome.PERMANENT_ERROR,
        status,
        refusal.message,
    )
    assert world.exceptions.get(A, d.exception_id).external_system is None
    world.clock.now = NOW + timedelta(days=2)
    with world.uow(write=True) as u:  # never retried
        assert u.deliveries.claim_due("w2", world.clock(), world.clock(), 10, lambda d: True) == []
    assert world.observed == [("WEBHOOK", "dispatch", "PERMANENT_ERROR")]


def test_a_retryable_failure_is_scheduled_by_the_backoff_within_the_horizon(world):
    d = world.dispatched()
    world.webhook.cue(
        world.marker(d), TargetDown("503 Service Unavailable", maybe_created=False, http_status=503)
    )
    got = world.attempt()
    assert got.state is DeliveryState.PENDING
    assert NOW <= got.next_attempt_at <= NOW + timedelta(seconds=5)  # retry 1: [0, base]
    assert (got.horizon_at, got.outcome_unknown, got.last_reason, got.last_error) == (
        NOW + HORIZON,  # first attempt of the round + DELIVERY_RETRY_HORIZON
        False,
        "TARGET_UNAVAILABLE",
        "503 Service Unavailable",
    )
    (attempt,) = world.stored(d).attempts
    assert (attempt.outcome, attempt.http_status) == (AttemptOutcome.RETRYABLE_ERROR, 503)
    # The second failure waits up to twice as long and keeps the round's horizon.
    world.clock.now = got.next_attempt_at
    world.webhook.cue(world.marker(d), TargetDown("502 Bad Gateway", maybe_created=False, http_status=502))
    second = world.attempt()
    assert world.clock() <= second.next_attempt_at <= world.clock() + timedelta(seconds=10)
    assert second.horizon_at == NOW + HORIZON and second.attempt_count == 2
    world.clock.now = second.next_attempt_at
    third = world.attempt()
    assert (third.state, third.attempt_count) == (DeliveryState.DELIVERED, 3)
    assert [a.outcome for a in world.stored(d).attempts] == [
        AttemptOutcome.RETRYABLE_ERROR,
        AttemptOutcome.RETRYABLE_ERROR,
        AttemptOutcome.DELIVERED,
    ]


def test_retry_after_is_honoured(world):
    d = world.dispatched()
    world.webhook.cue(
        world.marker(d),
        TargetDown("429 Too Many Requests", maybe_created=False, retry_after=120, http_status=429),
    )
    got = world.attempt()
    assert got.next_attempt_at == NOW + timedelta(seconds=120)


def test_a_timeout_is_logged_as_such_and_the_next_attempt_asks_before_creating(world):
    d = world.dispatched()
    world.webhook.cue(world.marker(d), TargetDown("read timed out", maybe_created=True, timed_out=True))
    got = world.attempt()
    assert (got.state, got.outcome_unknown) == (DeliveryState.PENDING, True)
    assert world.stored(d).attempts[0].outcome is AttemptOutcome.TIMEOUT
    assert world.observed == [("WEBHOOK", "dispatch", "TIMEOUT")]
    world.clock.now = got.next_attempt_at
    world.attempt()
    assert [r.check_existing for r in world.webhook.requests] == [False, True]


def test_a_lost_answer_is_adopted_by_the_next_attempt_not_created_twice(world):
    d = world.dispatched()
    world.webhook.cue(world.marker(d), LOSE_ANSWER)  # the ticket is created, its answer lost
    first = world.attempt()
    assert (first.state, first.outcome_unknown) == (DeliveryState.PENDING, True)
    assert world.stored(d).attempts[0].outcome is AttemptOutcome.RETRYABLE_ERROR
    world.clock.now = first.next_attempt_at
    second = world.attempt()
    assert (second.state, second.external_reference, second.outcome_unknown) == (
        DeliveryState.DELIVERED,
        "WEBHOOK-1",
        False,
    )
    assert len(world.webhook.tickets_for(world.marker(d))) == 1
    assert [r.delivery_id for r in world.webhook.requests] == [d.id, d.id]  # the same webhook-id


def test_a_connector_bug_counts_as_a_retryable_unknown_outcome(world):
    d = world.dispatched()
    world.webhook.cue(world.marker(d), RuntimeError("connector bug"))
    got = world.attempt()
    assert (got.state, got.outcome_unknown, got.last_reason) == (
        DeliveryState.PENDING,
        True,
        "TARGET_UNAVAILABLE",
    )
    assert "failed unexpectedly" in got.last_error


def test_past_the_horizon_the_delivery_fails(world):
    d = world.dispatched()
    world.clock.now = NOW + HORIZON - timedelta(seconds=1)
    with world.uow(write=True) as u:  # this round began an hour ago: one second of it is left
        u.deliveries.update_many([replace(d, horizon_at=NOW + HORIZON - timedelta(microseconds=1))])
    world.webhook.cue(world.marker(d), TargetDown("503", maybe_created=False, retry_after=5, http_status=503))
    got = world.attempt()
    assert (got.state, got.next_attempt_at, got.last_reason) == (
        DeliveryState.FAILED,
        None,
        "TARGET_UNAVAILABLE",
    )
    assert got.last_error == "gave up after 1 attempts: 503"
    assert world.stored(d).attempts[0].outcome is AttemptOutcome.RETRYABLE_ERROR


def test_an_exception_resolved_meanwhile_cancels_its_delivery_without_a_call(world):
    d = world.dispatched()
    world.exceptions.bulk_resolve(A, [d.exception_id], "fixed", "")
    got = world.attempt()
    assert (got.state, got.last_reason, got.next_attempt_at) == (
        DeliveryState.CANCELLED,
        "INVALID_STATE",
        None,
    )
    (attempt,) = world.stored(d).attempts
    assert (attempt.outcome, attempt.error) == (AttemptOutcome.PERMANENT_ERROR, "exception resolved")
    assert world.webhook.requests == []


def test_a_configuration_removed_after_the_dispatch_fails_the_delivery(world):
    world.dispatched()
    world.targets.delete(A, "WEBHOOK")
    got = world.attempt()
    assert (got.state, got.last_reason) == (DeliveryState.FAILED, "TARGET_NOT_CONFIGURED")
    assert world.webhook.requests == []


def test_what_a_target_answers_is_cleaned_before_it_is_stored(world):
    d = world.dispatched()
    world.webhook.cue(world.marker(d), TargetRejected("bad\x00 payload\r\n" + "x" * 10_000, http_status=400))
    got = world.attempt()
    stored = world.stored(d)
    for text in (got.last_error, stored.last_error, stored.attempts[0].error):
        assert len(text) == MAX_ERROR and text.startswith("bad payload x") and "\x00" not in text


def test_a_lost_lease_writes_nothing(world):
    d = world.dispatched()
    claimed = world.claim("w1")
    world.clock.now = NOW + timedelta(seconds=10)  # the lease (3 s) expired: another worker took over
    taken = world.claim("w2")
    assert world.worker.attempt(claimed) is None  # the call happened; its outcome is not recorded
    assert len(world.webhook.requests) == 1
    stored = world.stored(d)
    assert (stored.state, stored.lease_owner, stored.attempt_count) == (DeliveryState.IN_FLIGHT, "w2", 2)
    assert stored.attempts == (Attempt(1, NOW, 10_000, AttemptOutcome.TIMEOUT, None, LOST_ATTEMPT),)
    assert world.exceptions.get(A, d.exception_id).external_system is None
    assert taken.outcome_unknown  # w2 asks the target first: the ticket w1 created is adopted
    world.worker.owner = "w2"
    assert world.worker.attempt(taken).external_reference == "WEBHOOK-1"
    assert len(world.webhook.tickets) == 1


# -- claims and bulkheads -----------------------------------------------------------------------------


def test_host_keys():
    def config(**settings: str) -> TargetConfig:
        return TargetConfig("t", TargetSystem.WEBHOOK, settings)

    assert host_key(config(url="https://hooks.example/recon")) == "hooks.example:443"
    assert host_key(config(base_url="http://127.0.0.1:8080/x")) == "127.0.0.1:8080"
    assert host_key(config(instance_url="https://x.service-now.com")) == "x.service-now.com:443"
    assert host_key(config()) == host_key(None) == ""


def gated_world(**settings) -> World:
    world = World(GatedTarget(TargetSystem.WEBHOOK), GatedTarget(TargetSystem.JIRA), **settings)
    world.targets.put(B, "WEBHOOK", WEBHOOK_B)
    world.targets.put(A, "JIRA", JIRA_A)
    return world


def let_through_one(world: World, target: GatedTarget) -> None:
    running = world.worker.running_attempts()
    target.passes.release()
    until(lambda: world.worker.running_attempts() == running - 1)


def test_at_most_max_per_host_attempts_run_at_once_to_one_host():
    world = gated_world(max_per_host=1, max_per_tenant=8)
    webhook = world.connectors.targets[TargetSystem.WEBHOOK]
    try:
        a1 = world.dispatched(next_attempt_at=NOW - timedelta(seconds=2))  # due first
        a2 = world.dispatched(next_attempt_at=NOW - timedelta(seconds=1))
        b1 = world.dispatched(B)
        assert world.worker.claim_and_start() == 2  # one to hooks.example, one to other.example
        until(lambda: webhook.waiting == 2)
        assert world.worker.claim_and_start() == 0  # a2's host is busy
        assert world.stored(a2).state is DeliveryState.PENDING
        let_through_one(world, webhook)
        let_through_one(world, webhook)
        assert [world.stored(d).state for d in (a1, a2, b1)] == [
            DeliveryState.DELIVERED,
            DeliveryState.PENDING,
            DeliveryState.DELIVERED,
        ]
        assert world.worker.claim_and_start() == 1
        let_through_one(world, webhook)
        assert [world.stored(d).state for d in (a1, a2, b1)] == [DeliveryState.DELIVERED] * 3
    finally:
        world.worker.stop(0)


def test_at_most_max_per_tenant_attempts_run_at_once_for_one_tenant():
    world = gated_world(max_per_host=8, max_per_tenant=1)
    webhook, jira = (
        world.connectors.targets[TargetSystem.WEBHOOK],
        world.connectors.targets[TargetSystem.JIRA],
    )
    try:
        to_jira = world.dispatched(A, TargetSystem.JIRA, next_attempt_at=NOW - timedelta(seconds=2))
        to_hook = world.dispatched(A, TargetSystem.WEBHOOK, next_attempt_at=NOW - timedelta(seconds=1))
        theirs = world.dispatched(B)
        assert world.worker.claim_and_start() == 2  # tenant A's first (by due time) and tenant B's
        until(lambda: jira.waiting + webhook.waiting == 2)
        assert jira.waiting == 1 and world.stored(to_hook).state is DeliveryState.PENDING
        assert world.worker.claim_and_start() == 0
        let_through_one(world, jira)
        let_through_one(world, webhook)
        assert [world.stored(d).state for d in (to_jira, theirs)] == [DeliveryState.DELIVERED] * 2
        assert world.worker.claim_and_start() == 1
        let_through_one(world, webhook)
        assert world.stored(to_hook).state is DeliveryState.DELIVERED
    finally:
        world.worker.stop(0)


def test_a_paused_target_is_not_claimed_until_it_resumes(world):
    d = world.dispatched()
    world.targets.set_paused(A, "WEBHOOK", True)
    assert world.worker.claim_and_start() == 0
    world.targets.set_paused(A, "WEBHOOK", False)
    assert world.worker.claim_and_start() == 1
    until(lambda: world.worker.running_attempts() == 0)
    assert world.stored(d).state is DeliveryState.DELIVERED
