"""The fakes of tests/unit/fakes.py answer like the SQL adapters they stand in for: each scenario runs
once on the real repositories over a throwaway SQLite file and once on the fakes, and the answers
must be equal. This keeps the fakes honest where their behaviour is intricate (keyset paging,
upserts, delivery claims and leases, idempotency keys, transactions)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from server.domain.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.errors import DomainError
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.history import Action, HistoryEntry
from server.domain.idempotency import KeyScope, Policy
from server.domain.paging import SORT_FIELDS, ExceptionFilter, ExceptionQuery, PageAfter, sort_value
from server.domain.routing import Conditions, RoutingRule, RuleAction
from server.domain.sla import DEFAULT_TIERS, SlaPolicy
from server.domain.targets import StoredTarget
from server.storage.engine import make_engine
from server.storage.idempotency import SqlIdempotencyStore
from server.storage.migrate import upgrade
from server.storage.rate_limits import SqlCounterStore
from server.storage.tables import metadata
from server.storage.uow import SqlUnitOfWorkFactory
from tests.unit.fakes import FakeCounterStore, FakeKeyStore, FakeUnitOfWorkFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = [str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128), version=4)) for i in range(1, 41)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fakes') / 'contract.db'}"
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def both(engine) -> Callable[[Callable[[Any], Any]], None]:
    """both(scenario): runs scenario(factory) on SQL and on the fakes; their answers must be equal."""

    def run(scenario: Callable[[Any], Any]) -> None:
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        assert scenario(FakeUnitOfWorkFactory()) == scenario(SqlUnitOfWorkFactory(engine))

    return run


def exception(i: int, tenant: str = "tenant-a", **fields: Any) -> ReconException:
    created = T0 + timedelta(seconds=i % 4)
    values: dict[str, Any] = {
        "id": IDS[i],
        "tenant_id": tenant,
        "transaction_id": f"txn-{i}",
        "severity": Severity(i % 4 + 1),
        "status": Status((i // 4) % 4 + 1),
        "created_at": created,
        "updated_at": created + timedelta(hours=i % 2),
        "occurred_at": created,
        "assigned_to": "alice" if i % 3 == 0 else None,
        "external_system": "jira" if i % 5 == 0 else None,
    }
    values.update(fields)
    return ReconException(**values)


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except DomainError as err:
        return (type(err).__name__, err.reason)


# -- exceptions ---------------------------------------------------------------------------------------


def walk(uow, flt: ExceptionFilter, sort_by: str, descending: bool, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        with uow(write=False) as u:
            rows = u.exceptions.list("tenant-a", ExceptionQuery(flt, sort_by, descending, limit, after))
        pages.append([e.id for e in rows])
        if len(rows) <= limit:
            return pages
        last = rows[limit - 1]
        after = PageAfter(sort_value(last, sort_by), last.id)


@pytest.mark.parametrize(
    "flt",
    [
        ExceptionFilter(),
        ExceptionFilter(status=Status.ASSIGNED),
        ExceptionFilter(assigned_to="alice", severity=Severity.LOW),
        ExceptionFilter(external_system=" Jira "),
        ExceptionFilter(date_from=T0 + timedelta(seconds=1), date_to=T0 + timedelta(seconds=3)),
    ],
    ids=["none", "status", "assignee+severity", "external", "dates"],
)
def test_exception_listing_walks_alike(both, flt):
    def scenario(uow):
        with uow(write=True) as u:
            u.exceptions.add_many([exception(i) for i in range(30)])
            u.exceptions.add_many([exception(i, "tenant-b") for i in range(30, 36)])
        return [walk(uow, flt, s, d, limit) for s in SORT_FIELDS for d in (False, True) for limit in (1, 7)]

    both(scenario)


def test_overdue_and_due_date_walks_alike(both):
    """Some rows without a due date, some resolved, due dates colliding around `now`."""

    def scenario(uow):
        now = T0 + timedelta(hours=2)
        rows = [
            exception(
                i,
                due_at=None if i % 5 == 0 else T0 + timedelta(hours=i % 4),
                due_at_explicit=i % 2 == 0,
            )
            for i in range(30)
        ]
        with uow(write=True) as u:
            u.exceptions.add_many(rows)
            u.exceptions.add_many([exception(i, "tenant-b", due_at=T0) for i in range(30, 34)])
        pages = []
        for flt in (ExceptionFilter(overdue=True), ExceptionFilter(overdue=True, severity=Severity.LOW)):
            for sort_by in ("due_at", "created_at"):
                for descending in (False, True):
                    after = None
                    while True:
                        query = ExceptionQuery(flt, sort_by, descending, 4, after, now=now)
                        with uow(write=False) as u:
                            page = u.exceptions.list("tenant-a", query)
                        pages.append([(e.id, e.due_at, e.due_at_explicit) for e in page])
                        if len(page) <= 4:
                            break
                        after = PageAfter(sort_value(page[3], sort_by), page[3].id)
        with uow(write=True) as u:
            first = u.exceptions.overdue_unescalated("tenant-a", now, 5)
            u.exceptions.update_many([replace(e, escalated_at=now) for e in first[:3]])
        with uow(write=True) as u:
            second = u.exceptions.overdue_unescalated("tenant-a", now, 50)
        with uow(write=False) as u:
            counts = [
                u.exceptions.count_overdue_unescalated(tenant, now, cap)
                for tenant in ("tenant-a", "tenant-b")
                for cap in (2, 1000)
            ]
        return pages, walk(uow, ExceptionFilter(), "due_at", False, 6), first, second, counts

    both(scenario)


def test_sla_policies_alike(both):
    def scenario(uow):
        with uow(write=True) as u:
            u.sla.put(SlaPolicy("tenant-a", {**DEFAULT_TIERS, Severity.HIGH: 5}, None, "", T0))
            u.sla.put(SlaPolicy("tenant-b", dict(DEFAULT_TIERS), TargetSystem.WEBHOOK, "sla", T0))
            u.sla.put(SlaPolicy("tenant-a", {**DEFAULT_TIERS, Severity.LOW: 1}, TargetSystem.JIRA, "Q", T0))
        with uow(write=False) as u:
            return u.sla.get("tenant-a"), u.sla.get("tenant-c"), u.sla.with_escalation()

    both(scenario)


def test_exception_reads_writes_and_bad_cursors_alike(both):
    def scenario(uow):
        with uow(write=True) as u:
            u.exceptions.add_many(
                [exception(1, amount=Decimal("12.5")), exception(2), exception(3, "tenant-b")]
            )
        with uow(write=True) as u:
            changed = exception(
                1, status=Status.RESOLVED, external_system="manual", created_at=T0 - timedelta(days=9)
            )
            u.exceptions.update_many([changed, exception(3, "tenant-a", transaction_id="stolen")])
        with uow(write=False) as u:
            got = (
                u.exceptions.get("tenant-a", IDS[1].upper()),
                u.exceptions.get("tenant-b", IDS[1]),
                u.exceptions.get("tenant-a", "not-a-uuid"),
                u.exceptions.get_many("tenant-a", [IDS[2], IDS[1], IDS[1].upper(), IDS[3], "junk"]),
                u.exceptions.get("tenant-b", IDS[3]).transaction_id,
            )
            query = ExceptionQuery(ExceptionFilter(), "severity", False, 5, PageAfter(9, IDS[1]))
            bad = [
                outcome(lambda q=q: u.exceptions.list("tenant-a", q))
                for q in (
                    query,
                    ExceptionQuery(ExceptionFilter(), "created_at", True, 5, PageAfter("yesterday", IDS[1])),
                    ExceptionQuery(ExceptionFilter(), "id", True, 5, PageAfter("", "not-a-uuid")),
                )
            ]
        return got, bad

    both(scenario)


# -- history, deliveries, targets, tokens ---------------------------------------------------------


def test_history_alike(both):
    def scenario(uow):
        e, other = exception(1), exception(2, "tenant-b")
        entries = [
            HistoryEntry(
                IDS[10 + i], "tenant-a", e.id, Action.ASSIGN, "actor", T0 + timedelta(seconds=i // 3), {}
            )
            for i in range(8)
        ]
        entries[0] = HistoryEntry(
            IDS[10],
            "tenant-a",
            e.id,
            Action.CREATE,
            "a",
            T0,
            {"amount": Decimal("1.50"), "at": T0, "n": None},
        )
        with uow(write=True) as u:
            u.exceptions.add_many([e, other])
            u.history.add_many(
                [*reversed(entries), HistoryEntry(IDS[30], "tenant-b", other.id, Action.CREATE, "b", T0)]
            )
        pages = []
        for limit in (1, 3, 8):
            after = None
            while True:
                with uow(write=False) as u:
                    rows = u.history.list("tenant-a", e.id.upper(), after, limit)
                pages.append(rows)
                if len(rows) <= limit:
                    break
                after = PageAfter(sort_value(rows[limit - 1], "created_at"), rows[limit - 1].id)
        with uow(write=False) as u:
            others = (
                u.history.list("tenant-b", e.id, None, 10),
                u.history.list("tenant-a", "junk", None, 10),
            )
        return pages, others

    both(scenario)


def delivery(i: int, tenant: str = "tenant-a", **fields: Any) -> Delivery:
    target = fields.pop("target_system", TargetSystem.JIRA)
    values: dict[str, Any] = {
        "id": IDS[20 + i],
        "tenant_id": tenant,
        "key": dispatch_key(target, IDS[i], "Q"),
        "exception_id": IDS[i],
        "target_system": target,
        "queue": "Q",
        "state": DeliveryState.PENDING,
        "created_at": T0 + timedelta(seconds=i % 3),
        "updated_at": T0 + timedelta(seconds=i % 3),
        "actor_id": "tok",
        "next_attempt_at": T0 + timedelta(minutes=i % 4),
    }
    values.update(fields)
    return Delivery(**values)


def test_delivery_reads_writes_and_pages_alike(both):
    def scenario(uow):
        rows = [delivery(i) for i in range(1, 9)]
        rows[2] = delivery(3, state=DeliveryState.FAILED, last_error="no", last_reason="TARGET_REJECTED")
        rows[3] = delivery(4, target_system=TargetSystem.WEBHOOK, state=DeliveryState.DELIVERED)
        with uow(write=True) as u:
            u.exceptions.add_many([exception(i) for i in range(1, 9)])
            u.exceptions.add_many([exception(9, "tenant-b")])
            u.deliveries.add_many([*reversed(rows), delivery(9, "tenant-b")])
            u.deliveries.add_many([])
            u.deliveries.add_attempts_many(
                [
                    (
                        rows[2],
                        Attempt(2, T0 + timedelta(seconds=5), 40, AttemptOutcome.PERMANENT_ERROR, 400, "no"),
                    ),
                    (rows[2], Attempt(1, T0, 1500, AttemptOutcome.TIMEOUT)),
                    (rows[3], Attempt(1, T0, 3, AttemptOutcome.DELIVERED, 201)),
                ]
            )
        with uow(write=True) as u:
            u.deliveries.update_many(
                [
                    delivery(
                        1,
                        key="changed",
                        actor_id="tok-2",
                        created_at=T0 - timedelta(days=1),
                        state=DeliveryState.CANCELLED,
                        next_attempt_at=None,
                        updated_at=T0 + timedelta(hours=1),
                    ),
                    delivery(15),  # no such row: nothing happens
                ]
            )
        answers = []
        with uow(write=False) as u:
            answers += [
                u.deliveries.get_by_keys("tenant-a", [rows[0].key, rows[1].key, rows[1].key, "nope"]),
                u.deliveries.get_by_keys("tenant-b", [rows[1].key]),
                u.deliveries.get_by_keys("tenant-a", []),
                u.deliveries.get_many("tenant-a", [IDS[23].upper(), IDS[24], IDS[29], "junk"]),
                u.deliveries.get_many("tenant-a", [IDS[23], IDS[24]], with_attempts=True),
                u.deliveries.get("tenant-a", IDS[23]),
                u.deliveries.get("tenant-b", IDS[23]),
                u.deliveries.get("tenant-a", "junk"),
                u.deliveries.for_exception("tenant-a", IDS[3].upper()),
                u.deliveries.for_exception("tenant-b", IDS[3]),
                u.deliveries.for_exception("tenant-a", "junk"),
                u.deliveries.counts_by_state(),
                u.deliveries.oldest_due(T0 + timedelta(minutes=2)),
                u.deliveries.oldest_due(T0 - timedelta(minutes=2)),
            ]
        for state, target in [(None, None), (DeliveryState.PENDING, None), (None, TargetSystem.WEBHOOK)]:
            for limit in (1, 3, 10):
                after = None
                while True:
                    with uow(write=False) as u:
                        page = u.deliveries.page(
                            "tenant-a", state=state, target=target, after=after, limit=limit
                        )
                    answers.append(page)
                    if len(page) <= limit:
                        break
                    after = PageAfter(sort_value(page[limit - 1], "created_at"), page[limit - 1].id)
        with uow(write=False) as u:
            answers.append(
                outcome(
                    lambda: u.deliveries.page(
                        "tenant-a", state=None, target=None, after=PageAfter("x", IDS[1]), limit=2
                    )
                )
            )
        return answers

    both(scenario)


def test_delivery_claims_leases_and_finish_alike(both):
    t1, t2 = T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)

    def scenario(uow):
        answers: list[Any] = []
        seen: list[str] = []

        def accept(d: Delivery) -> bool:
            seen.append(d.id)
            return d.id != IDS[22]  # the worker's bulkheads refuse this one

        with uow(write=True) as u:
            u.exceptions.add_many([exception(i) for i in range(1, 9)])
            u.exceptions.add_many([exception(9, "tenant-b")])
            u.targets.put(StoredTarget("tenant-b", TargetSystem.JIRA, {}, "c", T0, T0))
            u.targets.set_paused("tenant-b", TargetSystem.JIRA, True)
            u.deliveries.add_many(
                [
                    delivery(1),
                    delivery(2),
                    delivery(3),
                    delivery(4, next_attempt_at=T0 + timedelta(hours=1)),  # not due yet
                    delivery(5, state=DeliveryState.DELIVERED, next_attempt_at=None),
                    # A lease that expires at t1 + 1 minute; its worker is gone.
                    delivery(
                        6,
                        state=DeliveryState.IN_FLIGHT,
                        attempt_count=2,
                        lease_owner="gone",
                        lease_expires_at=t1 + timedelta(minutes=1),
                    ),
                    delivery(7),
                    delivery(9, "tenant-b"),  # paused target
                ]
            )

        def step(fn):
            with uow(write=True) as u:
                answers.append(fn(u.deliveries))
            with uow(write=False) as u:
                answers.append(u.deliveries.get_many("tenant-a", IDS[20:30], with_attempts=True))
                answers.append(u.deliveries.get_many("tenant-b", IDS[20:30]))

        with uow(write=False) as u:
            answers.append([u.deliveries.any_due(t) for t in (T0 - timedelta(minutes=1), t1, t2)])
        step(lambda d: d.claim_due("w1", t1, t1 + timedelta(minutes=1), 2, accept))
        step(lambda d: d.claim_due("w2", t1, t1 + timedelta(minutes=1), 10, accept))
        answers.append(list(seen))
        first = answers[1][0]
        done = replace(
            first,
            state=DeliveryState.DELIVERED,
            external_reference="J-1",
            acknowledged=True,
            delivered_at=t1,
            next_attempt_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
        attempt = Attempt(first.attempt_count, t1, 12, AttemptOutcome.DELIVERED, 201)
        step(lambda d: d.finish("w2", done, attempt))  # not w2's lease: refused, nothing written
        step(lambda d: d.finish("w1", done, attempt))
        step(lambda d: d.finish("w1", done, attempt))  # no longer in flight
        # The leases of w1 and w2 expire; another worker takes their deliveries over, logging the
        # lost attempts, and the paused target's resumes.
        with uow(write=True) as u:
            u.targets.set_paused("tenant-b", TargetSystem.JIRA, False)
            answers.append(u.targets.set_paused("tenant-b", TargetSystem.WEBHOOK, True))
        with uow(write=False) as u:
            answers.append([u.deliveries.any_due(t) for t in (t1, t2)])  # t1: w1's and w2's leases live
        step(lambda d: d.claim_due("w3", t2, t2 + timedelta(minutes=1), 10, lambda d: True))
        with uow(write=False) as u:
            answers.append([u.deliveries.counts_by_state(), u.deliveries.any_due(t2)])
        return answers

    both(scenario)


def test_targets_and_tokens_alike(both):
    def scenario(uow):
        jira = StoredTarget("tenant-a", TargetSystem.JIRA, {"base_url": "https://j"}, "c1", T0, T0)
        with uow(write=True) as u:
            u.targets.put(jira)
            u.targets.put(StoredTarget("tenant-a", TargetSystem.WEBHOOK, {}, "c2", T0, T0))
            u.targets.put(StoredTarget("tenant-b", TargetSystem.JIRA, {}, "c3", T0, T0, paused=True))
            paused = [
                u.targets.set_paused("tenant-a", TargetSystem.JIRA, True),
                u.targets.set_paused("tenant-a", TargetSystem.SERVICENOW, True),  # not configured
            ]
            later = T0 + timedelta(days=1)
            u.targets.put(
                StoredTarget("tenant-a", TargetSystem.JIRA, {"base_url": "https://k"}, "c4", later, later)
            )  # a put keeps paused as it is
            u.tokens.add("id-1", "tenant-a", "ci", frozenset({"exceptions:read", "targets:admin"}), "h1")
            u.tokens.add("id-2", "tenant-b", "", frozenset(), "h2")
        with uow(write=True) as u:
            deleted = [
                u.targets.delete("tenant-a", TargetSystem.WEBHOOK),
                u.targets.delete("tenant-a", TargetSystem.WEBHOOK),
            ]
            revoked = [u.tokens.revoke("id-1", T0), u.tokens.revoke("id-1", T0), u.tokens.revoke("nope", T0)]
        with uow(write=False) as u:
            found = [u.tokens.find_by_hash(h) for h in ("h1", "h2", "h3")]
            return (
                u.targets.list("tenant-a"),
                u.targets.get("tenant-b", TargetSystem.JIRA),
                u.targets.get("tenant-b", TargetSystem.WEBHOOK),
                deleted,
                revoked,
                paused,
                [None if t is None else (t.id, t.tenant_id, t.name, t.scopes, t.revoked_at) for t in found],
                u.tokens.count(),
            )

    both(scenario)


def test_integration_reads_and_writes_alike(both):
    """Inbound hooks and outbound status (API.md §9): a target by its hook id, the events a hook
    applied, exceptions by their ticket, and the deliveries of several exceptions."""

    def scenario(uow):
        later = T0 + timedelta(days=8)
        with uow(write=True) as u:
            hooked = StoredTarget("tenant-a", TargetSystem.JIRA, {}, "c1", T0, T0, inbound_hook_id="hook-a")
            u.targets.put(hooked)
            u.targets.put(StoredTarget("tenant-b", TargetSystem.JIRA, {}, "c2", T0, T0))
            u.exceptions.add_many(
                [
                    exception(1, external_system="JIRA", external_issue_id="OPS-1"),
                    exception(2, external_system="JIRA", external_issue_id="OPS-1"),
                    exception(3, external_system="SERVICENOW", external_issue_id="OPS-1"),
                    exception(4, "tenant-b", external_system="JIRA", external_issue_id="OPS-1"),
                ]
            )
            u.deliveries.add_many([delivery(1), delivery(2), delivery(3, "tenant-b")])
            events = [
                u.targets.record_inbound_event("tenant-a", TargetSystem.JIRA, "e1", T0),
                u.targets.record_inbound_event("tenant-a", TargetSystem.JIRA, "e1", T0),
                u.targets.record_inbound_event("tenant-a", TargetSystem.SERVICENOW, "e1", T0),
                u.targets.record_inbound_event("tenant-b", TargetSystem.JIRA, "e1", T0),
                # A week later the first events are forgotten: e1 is new again for tenant-a's JIRA.
                u.targets.record_inbound_event("tenant-a", TargetSystem.JIRA, "e2", later),
                u.targets.record_inbound_event("tenant-a", TargetSystem.JIRA, "e1", later),
            ]
        with uow(write=False) as u:
            return (
                events,
                u.targets.by_hook_id("hook-a"),
                u.targets.by_hook_id("nope"),
                [e.id for e in u.exceptions.find_by_ticket("tenant-a", "JIRA", "OPS-1")],
                u.exceptions.find_by_ticket("tenant-a", "JIRA", "OPS-2"),
                [d.id for d in u.deliveries.for_exceptions("tenant-a", [IDS[0], IDS[1], IDS[2], "bad"])],
                u.deliveries.for_exceptions("tenant-a", []),
            )

    both(scenario)


def test_routing_rules_and_generations_alike(both):
    def make(i: int, tenant: str, priority: int, **conditions: Any) -> RoutingRule:
        return RoutingRule(
            id=IDS[i],
            tenant_id=tenant,
            name=f"rule {i}",
            priority=priority,
            enabled=i % 2 == 0,
            conditions=Conditions(**conditions),
            action=RuleAction(TargetSystem.JIRA, "OPS", "alice", Severity.HIGH, "big"),
            auto_dispatch=i % 3 == 0,
            created_at=T0 + timedelta(seconds=i),
            updated_at=T0 + timedelta(seconds=i),
        )

    def scenario(uow):
        with uow(write=True) as u:
            before = u.routing.generation("tenant-a")
            u.routing.bump_generation("tenant-a")
            u.routing.bump_generation("tenant-a")
            u.routing.add(make(1, "tenant-a", 20, severities=frozenset({Severity.LOW})))
            u.routing.add(make(2, "tenant-a", 10, min_amount=Decimal("1000.5"), currency="USD"))
            u.routing.add(make(3, "tenant-b", 10, metadata={"k": "v"}, sources=("a", "b"), min_age_hours=3))
            changed = make(1, "tenant-a", 5, reason_contains="late")
            replaced = [
                u.routing.replace(changed),
                u.routing.replace(replace(changed, tenant_id="tenant-b")),  # another tenant's: absent
                u.routing.replace(make(9, "tenant-a", 30, min_age_hours=1)),  # no such rule
            ]
        with uow(write=True) as u:
            deleted = [
                u.routing.delete("tenant-b", IDS[2]),  # another tenant's
                u.routing.delete("tenant-b", IDS[3]),
                u.routing.delete("tenant-b", IDS[3]),
            ]
            u.routing.bump_generation("tenant-b")
        with uow(write=False) as u:
            return (
                before,
                replaced,
                deleted,
                u.routing.list("tenant-a"),
                u.routing.list("tenant-b"),
                u.routing.get("tenant-a", IDS[1]),
                u.routing.get("tenant-b", IDS[1]),
                [u.routing.generation(t) for t in ("tenant-a", "tenant-b", "tenant-c")],
            )

    both(scenario)


# -- units of work, counters, idempotency keys ------------------------------------------------------


def test_transactions_alike(both):
    def scenario(uow):
        seen = []

        def ids():
            with uow(write=False) as u:
                return sorted(u.exceptions.get_many("tenant-a", IDS).keys())

        with uow(write=True) as u:
            u.exceptions.add_many([exception(1)])
        with pytest.raises(RuntimeError), uow(write=True) as u:
            u.exceptions.add_many([exception(2)])
            raise RuntimeError
        seen.append(ids())
        with uow.outer(write=True):
            seen.append(uow.in_transaction())  # lazy: nothing has run yet
            with uow(write=True) as u:
                u.exceptions.add_many([exception(3)])
            seen.append(uow.in_transaction())
            with pytest.raises(RuntimeError), uow.outer(write=True):  # a savepoint
                with uow(write=True) as u:
                    u.exceptions.add_many([exception(4)])
                raise RuntimeError
            with uow(write=False) as u:  # joined: sees the outer's own writes
                seen.append(sorted(u.exceptions.get_many("tenant-a", IDS).keys()))
        seen.append(ids())
        with pytest.raises(RuntimeError), uow.outer(write=True):
            with uow(write=True) as u:
                u.exceptions.add_many([exception(5)])
            raise RuntimeError
        seen.append(ids())
        with uow.outer(write=False), pytest.raises(RuntimeError, match="read-only outer"):
            uow(write=True)
        return seen

    both(scenario)


def test_counters_alike(engine):
    def hits(store):
        windows = [100, 100, 101, 101, 101, 103, 103, 104]
        admitted = [store.hit(t, "dispatch", w, lambda c, p: True) for w in windows for t in ("a", "b")]
        # Up to 2 a window: the refused calls are not counted, also as the previous window.
        limited = [
            store.hit(t, "dispatch", w, lambda c, p: c <= 2) for w in (200, 200, 200, 201, 201) for t in "ab"
        ]
        return admitted + limited

    with engine.begin() as conn:
        conn.execute(metadata.tables["rate_limit_counters"].delete())
    assert hits(FakeCounterStore()) == hits(SqlCounterStore(SqlUnitOfWorkFactory(engine)))


def test_idempotency_keys_alike(both):
    policy = Policy.of_seconds(ttl=3600, lock_timeout=60)

    def scenario(uow):
        store = (
            FakeKeyStore(uow, policy)
            if isinstance(uow, FakeUnitOfWorkFactory)
            else SqlIdempotencyStore(uow, policy)
        )
        scope = KeyScope("tenant-a", "/pkg.S/M", "k1")
        answers = [store.claim(scope, "f1", T0)]
        answers += [
            outcome(lambda fp=fp: store.claim(scope, fp, T0 + timedelta(seconds=1))) for fp in ("f1", "f2")
        ]
        with store.transaction() as tx:
            store.complete(tx, answers[0], b"resp", "pkg.Resp", T0 + timedelta(seconds=2))
        answers += [store.claim(scope, "f1", T0 + timedelta(seconds=3))]
        answers += [outcome(lambda: store.claim(scope, "f2", T0 + timedelta(seconds=3)))]
        answers += [store.claim(scope, "f2", T0 + timedelta(hours=2))]  # expired: taken over as new
        other = KeyScope("tenant-a", "/pkg.S/M", "k2")
        first = store.claim(other, "f1", T0)
        second = store.claim(other, "f1", T0 + timedelta(minutes=2))  # abandoned: taken over
        lost = []
        with pytest.raises(DomainError) as err, store.transaction() as tx:
            with uow(write=True) as u:
                u.tokens.add("t1", "tenant-a", "", frozenset(), "h1")
            store.complete(tx, first, b"late", "pkg.Resp", T0 + timedelta(minutes=3))
        lost.append(err.value.reason)
        with uow(write=False) as u:
            lost.append(u.tokens.count())  # the call's work rolled back with it
        answers += [store.release(first), store.release(second), store.release(second), lost]
        answers += [store.claim(other, "f3", T0 + timedelta(minutes=4))]
        return answers

    both(scenario)
