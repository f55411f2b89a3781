"""SqlDeliveryRepository on SQLite and PostgreSQL: claims (due, leases, paused targets, bulkheads'
`accept`, limits; FOR UPDATE SKIP LOCKED on PostgreSQL), the lease-checked finish, pages and reads."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.domain.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.paging import PageAfter
from server.domain.targets import StoredTarget
from server.storage.engine import is_sqlite
from server.storage.repositories import sort_value
from server.storage.repositories.deliveries import LOST_ATTEMPT
from tests.support.plans import index_plan, sent_to

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
EVERYTHING = lambda d: True  # noqa: E731  (an `accept` without bulkheads)


def delivery(e, target: TargetSystem = TargetSystem.WEBHOOK, queue: str = "", **fields: Any) -> Delivery:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "tenant_id": e.tenant_id,
        "key": dispatch_key(target, e.id, queue),
        "exception_id": e.id,
        "target_system": target,
        "queue": queue,
        "state": DeliveryState.PENDING,
        "created_at": T0,
        "updated_at": T0,
        "actor_id": "tok-1",
        "next_attempt_at": T0,
    }
    values.update(fields)
    return Delivery(**values)


@pytest.fixture
def seed(uow, new_exception):
    """seed(*specs): one exception and one delivery per spec ((tenant, fields) or fields), stored."""

    def run(*specs: dict[str, Any] | tuple[str, dict[str, Any]]) -> list[Delivery]:
        made = []
        for spec in specs:
            tenant, fields = spec if isinstance(spec, tuple) else ("tenant-a", spec)
            made.append((new_exception(tenant), fields))
        rows = [delivery(e, **fields) for e, fields in made]
        with uow(write=True) as u:
            u.exceptions.add_many([e for e, _ in made])
            u.deliveries.add_many(rows)
        return rows

    return run


def claim(uow, owner: str, now: datetime, limit: int = 10, accept=EVERYTHING) -> list[Delivery]:
    with uow(write=True, join=False) as u:
        return u.deliveries.claim_due(owner, now, now + LEASE, limit, accept)


def stored(uow, d: Delivery) -> Delivery:
    with uow(write=False) as u:
        return u.deliveries.get(d.tenant_id, d.id)


def ids(rows) -> list[str]:
    return [d.id for d in rows]


# -- claims -------------------------------------------------------------------------------------------


def test_claim_takes_due_deliveries_soonest_first_up_to_the_limit(uow, seed):
    soon, sooner, later, done, failed, cancelled = seed(
        {"next_attempt_at": T0 + timedelta(seconds=2)},
        {"next_attempt_at": T0 + timedelta(seconds=1), "attempt_count": 2},
        {"next_attempt_at": T0 + timedelta(seconds=30)},  # not due yet
        {"state": DeliveryState.DELIVERED, "next_attempt_at": None},
        {"state": DeliveryState.FAILED, "next_attempt_at": T0},  # ended: never claimed
        {"state": DeliveryState.CANCELLED, "next_attempt_at": T0},
    )
    now = T0 + timedelta(seconds=2)
    first = claim(uow, "w1", now, limit=1)
    assert ids(first) == [sooner.id]
    (got,) = first
    assert (got.state, got.attempt_count, got.lease_owner, got.lease_expires_at, got.updated_at) == (
        DeliveryState.IN_FLIGHT,
        3,
        "w1",
        now + LEASE,
        now,
    )
    assert stored(uow, sooner) == got
    assert ids(claim(uow, "w2", now)) == [soon.id]  # sooner is leased to w1
    assert claim(uow, "w3", now) == []
    assert ids(claim(uow, "w3", T0 + timedelta(seconds=30))) == [later.id]  # the leases are still live
    for d in (done, failed, cancelled):
        assert stored(uow, d) == d


def test_claim_asks_accept_in_order_and_stops_at_the_limit(uow, seed):
    rows = seed(*({"next_attempt_at": T0 + timedelta(seconds=i)} for i in range(5)))
    asked: list[str] = []

    def accept(d: Delivery) -> bool:  # the worker's bulkheads: the second one's host is busy
        asked.append(d.id)
        return d.id != rows[1].id

    got = claim(uow, "w1", T0 + timedelta(minutes=1), limit=2, accept=accept)
    assert ids(got) == [rows[0].id, rows[2].id]
    assert asked == [rows[0].id, rows[1].id, rows[2].id]  # none after the limit was reached
    assert stored(uow, rows[1]).state is DeliveryState.PENDING


def test_a_paused_targets_deliveries_are_not_claimed(uow, seed):
    hook_a, jira_a, hook_b = seed(
        {},
        {"target": TargetSystem.JIRA},
        ("tenant-b", {}),
    )
    with uow(write=True) as u:
        for tenant, target in [("tenant-a", TargetSystem.WEBHOOK), ("tenant-b", TargetSystem.WEBHOOK)]:
            u.targets.put(StoredTarget(tenant, target, {}, "sealed", T0, T0))
        assert u.targets.set_paused("tenant-a", TargetSystem.WEBHOOK, True)
        assert not u.targets.set_paused("tenant-a", TargetSystem.SERVICENOW, True)  # not configured
    now = T0 + timedelta(seconds=1)
    with uow(write=False) as u:
        assert u.targets.get("tenant-a", TargetSystem.WEBHOOK).paused
        assert not u.targets.get("tenant-b", TargetSystem.WEBHOOK).paused
    assert sorted(ids(claim(uow, "w1", now))) == sorted([jira_a.id, hook_b.id])
    with uow(write=True) as u:
        u.targets.put(StoredTarget("tenant-a", TargetSystem.WEBHOOK, {"x": "1"}, "new", now, now))
    assert claim(uow, "w1", now) == []  # re-configuring does not resume
    with uow(write=True) as u:
        u.targets.set_paused("tenant-a", TargetSystem.WEBHOOK, False)
    assert ids(claim(uow, "w1", now)) == [hook_a.id]


def test_an_expired_lease_is_taken_over_and_its_lost_attempt_logged(uow, seed):
    (d,) = seed({"attempt_count": 1})
    claimed_at = T0 + timedelta(seconds=10)
    (first,) = claim(uow, "w1", claimed_at)
    assert claim(uow, "w2", claimed_at + LEASE) == []  # not expired yet (expires strictly after)
    taken_at = claimed_at + LEASE + timedelta(seconds=5)
    (taken,) = claim(uow, "w2", taken_at)
    assert (taken.lease_owner, taken.attempt_count, taken.outcome_unknown, taken.lease_expires_at) == (
        "w2",
        3,
        True,  # w1 may have created the ticket: w2 asks the target first
        taken_at + LEASE,
    )
    assert stored(uow, d).attempts == (
        Attempt(2, claimed_at, 65_000, AttemptOutcome.TIMEOUT, None, LOST_ATTEMPT),
    )
    # w1 comes back late: its outcome is refused.
    late = replace(first, state=DeliveryState.DELIVERED, external_reference="X-1", lease_owner=None)
    with uow(write=True) as u:
        assert u.deliveries.finish("w1", late, Attempt(2, claimed_at, 1, AttemptOutcome.DELIVERED)) is False
    assert stored(uow, d) == replace(taken, attempts=stored(uow, d).attempts)


def test_finish_records_only_for_the_lease_owner_of_an_in_flight_delivery(uow, seed):
    (d,) = seed({})
    now = T0 + timedelta(seconds=1)
    (claimed,) = claim(uow, "w1", now)
    done = replace(
        claimed,
        state=DeliveryState.PENDING,
        next_attempt_at=now + timedelta(seconds=4),
        horizon_at=now + timedelta(days=1),
        last_error="503",
        last_reason="TARGET_UNAVAILABLE",
        lease_owner=None,
        lease_expires_at=None,
        updated_at=now + timedelta(seconds=1),
    )
    attempt = Attempt(1, now, 250, AttemptOutcome.RETRYABLE_ERROR, 503, "503")
    with uow(write=True) as u:
        assert u.deliveries.finish("w2", done, attempt) is False
    assert stored(uow, d) == claimed  # nothing written, no attempt logged
    with uow(write=True) as u:
        assert u.deliveries.finish("w1", done, attempt) is True
    assert stored(uow, d) == replace(done, attempts=(attempt,))
    with uow(write=True) as u:
        assert u.deliveries.finish("w1", done, attempt) is False  # no longer in flight
    assert stored(uow, d).attempts == (attempt,)


def test_due_probe_counts_and_oldest_due(uow, seed):
    seed(
        {"next_attempt_at": T0 + timedelta(seconds=30)},
        {"next_attempt_at": T0 + timedelta(seconds=10)},
        {"state": DeliveryState.DELIVERED, "next_attempt_at": None},
        ("tenant-b", {"state": DeliveryState.FAILED, "next_attempt_at": None}),
    )
    with uow(write=False) as u:
        assert not u.deliveries.any_due(T0)
        assert u.deliveries.oldest_due(T0) is None
        assert u.deliveries.any_due(T0 + timedelta(seconds=10))
        assert u.deliveries.oldest_due(T0 + timedelta(minutes=1)) == T0 + timedelta(seconds=10)
        assert u.deliveries.counts_by_state() == {"PENDING": 2, "DELIVERED": 1, "FAILED": 1}
    claim(uow, "w1", T0 + timedelta(minutes=1))
    with uow(write=False) as u:
        assert u.deliveries.counts_by_state() == {"IN_FLIGHT": 2, "DELIVERED": 1, "FAILED": 1}
        assert not u.deliveries.any_due(T0 + timedelta(minutes=1))
        assert u.deliveries.any_due(T0 + timedelta(minutes=3))  # their leases expired


def test_concurrent_claims_skip_locked_rows_and_take_disjoint_deliveries(uow, seed, engine):
    """FOR UPDATE SKIP LOCKED: two workers claiming at once, each holding its transaction open until
    the other has claimed too, never wait for each other and never take the same delivery."""
    if is_sqlite(engine):
        pytest.skip("SQLite has one writer at a time (BEGIN IMMEDIATE): claims cannot overlap")
    rows = seed(*({"next_attempt_at": T0 + timedelta(milliseconds=i)} for i in range(20)))
    now = T0 + timedelta(seconds=1)
    both_claimed = threading.Barrier(2, timeout=15)
    got: dict[str, list[Delivery]] = {}
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            with uow(write=True, join=False) as u:
                claimed = u.deliveries.claim_due(owner, now, now + LEASE, 2, EVERYTHING)
                both_claimed.wait()  # both transactions are open, their rows locked
            got[owner] = claimed
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(owner,)) for owner in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    first, second = set(ids(got["w1"])), set(ids(got["w2"]))
    assert len(first) == len(second) == 2 and not first & second
    for owner, claimed in got.items():
        assert {stored(uow, d).lease_owner for d in claimed} == {owner}
    # What neither took is still there for the next claim; what they took is not.
    rest = claim(uow, "w3", now, limit=100)
    assert set(ids(rest)) == {d.id for d in rows} - first - second


# -- reads and pages ----------------------------------------------------------------------------------


def test_reads_by_id_with_and_without_attempts(uow, seed):
    d, theirs = seed({}, ("tenant-b", {}))
    attempts = [
        Attempt(2, T0 + timedelta(seconds=9), 12, AttemptOutcome.PERMANENT_ERROR, 422, "no"),
        Attempt(1, T0, 30_000, AttemptOutcome.TIMEOUT),
    ]
    with uow(write=True) as u:
        u.deliveries.add_attempts_many([(d, a) for a in attempts])
    with uow(write=False) as u:
        assert u.deliveries.get_many("tenant-a", [d.id.upper(), theirs.id, "junk"]) == {d.id: d}
        with_attempts = u.deliveries.get_many("tenant-a", [d.id], with_attempts=True)[d.id]
        assert u.deliveries.get("tenant-a", d.id) == with_attempts
        assert u.deliveries.get("tenant-b", d.id) is None
        assert u.deliveries.get("tenant-a", "junk") is None
        assert u.deliveries.get_many("tenant-a", []) == {}
    assert with_attempts.attempts == tuple(reversed(attempts))  # by number
    assert with_attempts.attempts[0].started_at.tzinfo is UTC


@pytest.mark.parametrize("locking", [False, True], ids=["read", "locking read"])
def test_reads_by_id_go_by_primary_key_without_statistics(uow, seed, engine, locking):
    """The read a dispatch's wait polls (100 ids), and the locking read of a claim, walk the primary
    key, not a tenant index and a filter over every delivery of the tenant, also on a table
    PostgreSQL has no statistics for yet (it grew faster than autovacuum analyzes it: the
    benchmark's tables, a new deployment)."""
    rows = seed(*[{} for _ in range(60)], *[("tenant-b", {}) for _ in range(5)])
    wanted = [d.id for d in rows[:50]]
    with sent_to(engine, "deliveries") as sent, uow(write=locking) as u:
        assert set(u.deliveries.get_many("tenant-a", [*wanted, rows[-1].id])) == set(wanted)
    [(statement, parameters)] = sent
    assert ("FOR UPDATE" in statement) is (locking and not is_sqlite(engine))  # SQLite has no row locks
    plan = index_plan(engine, statement, parameters)
    if is_sqlite(engine):
        assert "sqlite_autoindex_deliveries_1" in plan and "ix_deliveries" not in plan, plan
    else:
        # Usually no ANALYZE has run on this table yet (the case that matters); autovacuum may
        # have in a long run, and the plan must be by primary key either way.
        assert "pk_deliveries" in plan and "ix_deliveries" not in plan, plan


@pytest.mark.parametrize("locking", [False, True], ids=["read", "locking read"])
def test_reads_by_key_go_by_the_key_index_without_statistics(uow, seed, engine, locking):
    """A dispatch's read of the deliveries of its (target, exception, queue) keys: by the key index,
    not by walking an index that starts with the tenant (which the (tenant_id, key) constraint
    shares with three others), also on a table PostgreSQL has no statistics for yet."""
    rows = seed(*[{} for _ in range(60)], *[("tenant-b", {}) for _ in range(5)])
    wanted = [d.key for d in rows[:50]]
    with sent_to(engine, "deliveries") as sent, uow(write=locking) as u:
        assert set(u.deliveries.get_by_keys("tenant-a", [*wanted, rows[-1].key])) == set(wanted)
    [(statement, parameters)] = sent
    plan = index_plan(engine, statement, parameters)
    assert "ix_deliveries_key" in plan and "ix_deliveries_tenant" not in plan, plan


def test_a_locking_read_by_id_leaves_another_tenants_rows_unlocked(uow, seed, engine):
    """The tenant is checked on each row before it is locked: a caller naming another tenant's
    delivery gets nothing and holds no lock on it (its owner can still update it)."""
    (theirs,) = seed(("tenant-b", {}))
    with uow(write=True) as u:
        assert u.deliveries.get_many("tenant-a", [theirs.id]) == {}
        done = threading.Event()

        def owner_updates() -> None:
            with uow(write=True) as other:
                other.deliveries.update_many([replace(theirs, attempt_count=7)])
            done.set()

        if not is_sqlite(engine):  # SQLite has one writer at a time whatever the rows
            worker = threading.Thread(target=owner_updates)
            worker.start()
            assert done.wait(10), "the other tenant's row was locked"
            worker.join()


def test_for_exception_oldest_first_with_attempts(uow, seed, new_exception):
    (jira,) = seed({"target": TargetSystem.JIRA, "created_at": T0 + timedelta(seconds=5)})
    eid = jira.exception_id
    webhook = replace(
        jira,
        id=str(uuid.uuid4()),
        key=dispatch_key(TargetSystem.WEBHOOK, eid, "q"),
        target_system=TargetSystem.WEBHOOK,
        queue="q",
        created_at=T0,
    )
    with uow(write=True) as u:
        u.deliveries.add_many([webhook])
        u.deliveries.add_attempts_many([(webhook, Attempt(1, T0, 3, AttemptOutcome.DELIVERED, 200))])
    with uow(write=False) as u:
        got = u.deliveries.for_exception("tenant-a", eid.upper())
        assert u.deliveries.for_exception("tenant-b", eid) == []
        assert u.deliveries.for_exception("tenant-a", "junk") == []
    assert ids(got) == [webhook.id, jira.id]
    assert [len(d.attempts) for d in got] == [1, 0]


def test_pages_newest_first_by_keyset_with_filters(uow, seed):
    specs = [
        {
            "created_at": T0 + timedelta(seconds=i // 3),  # three share each timestamp: the id breaks ties
            "state": DeliveryState.FAILED if i % 2 else DeliveryState.PENDING,
            "target": TargetSystem.JIRA if i % 3 == 0 else TargetSystem.WEBHOOK,
        }
        for i in range(10)
    ]
    rows = seed(*specs, ("tenant-b", {}))[:10]
    with uow(write=True) as u:
        u.deliveries.add_attempts_many([(rows[0], Attempt(1, T0, 1, AttemptOutcome.TIMEOUT))])

    def walk(state, target, limit) -> list[str]:
        seen, after = [], None
        while True:
            with uow(write=False) as u:
                page = u.deliveries.page("tenant-a", state=state, target=target, after=after, limit=limit)
            seen += ids(page[:limit])
            if len(page) <= limit:
                return seen
            after = PageAfter(sort_value(page[limit - 1], "created_at"), page[limit - 1].id)

    def expected(keep) -> list[str]:
        chosen = sorted((d for d in rows if keep(d)), key=lambda d: (d.created_at, d.id), reverse=True)
        return ids(chosen)

    for limit in (1, 3, 10):
        assert walk(None, None, limit) == expected(lambda d: True)
        assert walk(DeliveryState.FAILED, None, limit) == expected(lambda d: d.state is DeliveryState.FAILED)
        assert walk(None, TargetSystem.JIRA, limit) == expected(
            lambda d: d.target_system is TargetSystem.JIRA
        )
        assert walk(DeliveryState.PENDING, TargetSystem.WEBHOOK, limit) == expected(
            lambda d: d.state is DeliveryState.PENDING and d.target_system is TargetSystem.WEBHOOK
        )
    with uow(write=False) as u:
        (first,) = [
            d
            for d in u.deliveries.page("tenant-a", state=None, target=None, after=None, limit=20)
            if d.id == rows[0].id
        ]
    assert len(first.attempts) == 1
