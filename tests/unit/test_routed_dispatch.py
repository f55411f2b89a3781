"""Dispatch without a target system (API.md §8) over the in-memory fakes: each item routed by the
first enabled matching rule, overrides and a ROUTE history entry written with its delivery, NO_ROUTE
per item, an explicit target bypassing the rules, and the rules read once per call, never per item."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from server.domain.delivery import DeliveryState
from server.domain.dispatch import TargetSystem
from server.domain.errors import FailedPrecondition, InvalidArgument
from server.domain.exceptions import NewException, Severity, Status
from server.domain.history import Action
from server.domain.routing import RuleInput
from server.services.dispatch import DispatchService
from server.services.exceptions import ExceptionService
from server.services.routing import RoutingService, RulesCache
from server.services.sla import SlaService
from tests.unit.test_dispatch_service import WEBHOOK, A, B, World


class Routed:
    def __init__(self) -> None:
        self.w = World()
        self.w.targets.put(A, "WEBHOOK", WEBHOOK)
        self.cache = RulesCache()
        self.routing = RoutingService(self.w.uow, self.cache, self.w.clock)
        self.service = DispatchService(
            self.w.uow,
            self.w.targets,
            self.w.connectors,
            self.w.deliveries,
            clock=self.w.clock,
            wait_seconds=0,
            rules=self.cache,
        )

    def exception(self, principal=A, **fields) -> str:
        return self.w.exceptions.create(principal, NewException("txn", **fields)).id

    def rule(self, priority: int, principal=A, **fields):
        values = {"name": f"p{priority}", "priority": priority, "target_system": "MANUAL"}
        values.update(fields)
        return self.routing.create(principal, RuleInput(**values))

    def history(self, eid: str, action: Action):
        return [h for h in self.w.uow.rows.history.values() if h.exception_id == eid and h.action is action]


@pytest.fixture
def r() -> Routed:
    return Routed()


def test_bulk_routes_each_item_by_its_first_matching_rule(r):
    hot = r.rule(
        1,
        severities=("HIGH",),
        target_system="webhook",
        queue="hot",
        assignee="oncall",
        severity="CRITICAL",
        severity_reason="high and from the bank",
    )
    r.rule(2, enabled=False, sources=("bank",), target_system="WEBHOOK", queue="never")
    bank = r.rule(3, sources=("bank",), queue="desk")
    high = r.exception(severity=Severity.HIGH, source="bank")
    plain = r.exception(severity=Severity.LOW, source="bank")
    nowhere = r.exception(severity=Severity.LOW, source="ledger")
    missing = str(uuid.uuid4())
    outcome = r.service.bulk_dispatch(A, [high, plain, nowhere, missing, plain], "", "")
    assert outcome.total == 4
    assert outcome.succeeded == [plain]  # MANUAL delivers at once
    reasons = {f.exception_id: f.reason for f in outcome.failed}
    assert reasons == {high: "DELIVERY_SCHEDULED", nowhere: "NO_ROUTE", missing: "NOT_FOUND"}
    assert r.w.delivery(high, TargetSystem.WEBHOOK, "hot").state is DeliveryState.PENDING
    assert r.w.delivery(plain, TargetSystem.MANUAL, "desk").state is DeliveryState.DELIVERED
    assert r.w.delivery(high, TargetSystem.WEBHOOK, "never") is None
    rows = r.w.uow.rows.exceptions
    assert rows[high].severity is Severity.CRITICAL
    assert (rows[high].assigned_to, rows[high].status) == ("oncall", Status.ASSIGNED)
    assert rows[plain].severity is Severity.LOW and rows[plain].assigned_to is None
    (entry,) = r.history(high, Action.ROUTE)
    assert entry.changes == {
        "rule_id": hot.id,
        "rule_name": "p1",
        "target_system": "WEBHOOK",
        "queue": "hot",
        "assigned_to": {"from": None, "to": "oncall"},
        "status": {"from": "OPEN", "to": "ASSIGNED"},
        "severity": {"from": "HIGH", "to": "CRITICAL"},
        "severity_reason": "high and from the bank",
        # HIGH's 72 h became CRITICAL's 24 h from occurred_at (the caller set no due date).
        "due_at": {"from": "2026-03-05T12:00:00+00:00", "to": "2026-03-03T12:00:00+00:00"},
    }
    assert rows[high].due_at == rows[high].occurred_at + timedelta(hours=24)
    (entry,) = r.history(plain, Action.ROUTE)
    assert entry.changes["rule_id"] == bank.id
    assert r.history(nowhere, Action.ROUTE) == []


def test_a_hundred_items_read_the_rules_once(r):
    for p in range(10):
        r.rule(p, sources=(f"s{p}",), queue=f"q{p}")
    ids = [r.exception(source=f"s{i % 12}") for i in range(100)]
    loads = r.cache.loads
    outcome = r.service.bulk_dispatch(A, ids, "", "")
    assert r.cache.loads - loads <= 1
    assert len(outcome.succeeded) == 84 and {f.reason for f in outcome.failed} == {"NO_ROUTE"}
    outcome = r.service.bulk_dispatch(A, ids, "", "")
    assert r.cache.loads - loads <= 1  # unchanged rules: not read again


def test_single_dispatch_without_a_match_is_no_route(r):
    eid = r.exception(source="x")
    r.rule(1, sources=("y",))
    with pytest.raises(FailedPrecondition) as caught:
        r.service.dispatch(A, eid, "", "")
    assert caught.value.reason == "NO_ROUTE"
    r.rule(2, sources=("x",), queue="found")  # a rule change is seen by the next call
    delivery = r.service.dispatch(A, eid, "", "")
    assert (delivery.target_system, delivery.queue) == (TargetSystem.MANUAL, "found")


def test_an_explicit_target_bypasses_the_rules(r):
    eid = r.exception(severity=Severity.HIGH)
    r.rule(1, severities=("HIGH",), assignee="nobody", queue="ruled")
    delivery = r.service.dispatch(A, eid, "MANUAL", "mine")
    assert delivery.queue == "mine"
    assert r.w.uow.rows.exceptions[eid].assigned_to is None
    assert r.history(eid, Action.ROUTE) == []


def test_a_rule_to_an_unconfigured_target_fails_its_items_only(r):
    r.rule(1, sources=("jira",), target_system="JIRA")
    r.rule(2, sources=("desk",))
    to_jira, to_desk = r.exception(source="jira"), r.exception(source="desk")
    outcome = r.service.bulk_dispatch(A, [to_jira, to_desk], "", "")
    assert outcome.succeeded == [to_desk]
    assert [(f.exception_id, f.reason) for f in outcome.failed] == [(to_jira, "TARGET_NOT_CONFIGURED")]
    assert r.history(to_jira, Action.ROUTE) == []
    with pytest.raises(FailedPrecondition) as caught:
        r.service.dispatch(A, to_jira, "", "")
    assert caught.value.reason == "TARGET_NOT_CONFIGURED"


def test_rules_are_per_tenant_and_a_queue_needs_a_target(r):
    r.rule(1, sources=("s",))
    other = r.exception(principal=B, source="s")
    with pytest.raises(FailedPrecondition):
        r.service.dispatch(B, other, "", "")
    with pytest.raises(InvalidArgument) as caught:
        r.service.bulk_dispatch(A, [r.exception(source="s")], "", "q")
    assert [v.field for v in caught.value.violations] == ["queue"]


def test_a_due_date_the_caller_set_stays_when_a_rule_changes_the_severity(r):
    r.rule(1, severities=("LOW",), severity="CRITICAL", severity_reason="escalate")
    due = r.w.clock.now + timedelta(days=30)
    eid = r.w.exceptions.create(A, NewException("txn", severity=Severity.LOW, due_at=due)).id
    r.service.dispatch(A, eid, "", "")
    row = r.w.uow.rows.exceptions[eid]
    assert (row.severity, row.due_at) == (Severity.CRITICAL, due)
    assert "due_at" not in r.history(eid, Action.ROUTE)[0].changes


# -- auto_dispatch on create ----------------------------------------------------------------------------


def test_auto_dispatch_rules_dispatch_new_exceptions_in_the_create(r):
    r.w.exceptions = ExceptionService(r.w.uow, r.w.clock, auto_dispatch=r.service)
    r.rule(1, sources=("manual-only",), queue="not auto")  # the first match decides: not auto
    r.rule(2, sources=("hook", "manual-only"), target_system="WEBHOOK", queue="auto", auto_dispatch=True)
    r.rule(3, sources=("desk",), queue="desk", assignee="clerk", auto_dispatch=True)
    wakes = r.w.wakes
    items = [NewException("a", source="hook"), NewException("b", source="desk")]
    created = r.w.exceptions.batch_create(A, [*items, NewException("c", source="manual-only")])
    hook, desk, manual_only = created
    assert r.w.delivery(hook.id, TargetSystem.WEBHOOK, "auto").state is DeliveryState.PENDING
    assert hook.external_system is None  # not delivered yet: the create does not wait
    assert r.w.delivery(desk.id, TargetSystem.MANUAL, "desk").state is DeliveryState.DELIVERED
    assert (desk.external_system, desk.assigned_to, desk.status) == ("MANUAL", "clerk", Status.ASSIGNED)
    assert r.w.uow.rows.exceptions[desk.id] == desk
    assert {d.exception_id for d in r.w.uow.rows.deliveries.values()} == {hook.id, desk.id}
    assert manual_only.external_system is None and r.history(manual_only.id, Action.ROUTE) == []
    assert [len(r.history(e.id, Action.ROUTE)) for e in (hook, desk)] == [1, 1]
    assert len(r.history(desk.id, Action.DISPATCH)) == 1
    assert r.w.wakes == wakes + 1


def test_no_auto_dispatch_rule_leaves_the_create_alone(r):
    r.w.exceptions = ExceptionService(r.w.uow, r.w.clock, auto_dispatch=r.service)
    r.rule(1, sources=("hook",), target_system="WEBHOOK")
    e = r.w.exceptions.create(A, NewException("a", source="hook"))
    assert r.w.uow.rows.deliveries == {} and r.history(e.id, Action.ROUTE) == []


# -- escalation of overdue exceptions -------------------------------------------------------------------


def test_overdue_unresolved_exceptions_escalate_once(r):
    r.w.targets.put(B, "WEBHOOK", WEBHOOK)
    SlaService(r.w.uow, r.w.clock).put(A, [("CRITICAL", 1)], "MANUAL", "sla")
    SlaService(r.w.uow, r.w.clock).put(B, [("CRITICAL", 1)], "WEBHOOK", "")
    old = r.w.clock.now - timedelta(hours=2)
    late, resolved, fresh = (
        r.exception(severity=Severity.CRITICAL, occurred_at=old),
        r.exception(severity=Severity.CRITICAL, occurred_at=old),
        r.exception(severity=Severity.CRITICAL),
    )
    r.w.exceptions.bulk_resolve(A, [resolved], "done", "")
    other = r.exception(principal=B, severity=Severity.CRITICAL, occurred_at=old)
    assert r.service.escalate_overdue() == 2
    assert r.service.escalate_overdue() == 0  # once
    row = r.w.uow.rows.exceptions[late]
    assert row.escalated_at == r.w.clock.now and row.external_system == "MANUAL"
    assert r.w.delivery(late, TargetSystem.MANUAL, "sla").state is DeliveryState.DELIVERED
    (entry,) = r.history(late, Action.ESCALATE)
    assert entry.actor_id == "sla-escalation" and entry.changes["target_system"] == "MANUAL"
    assert entry.changes["delivery_id"] == r.w.delivery(late, TargetSystem.MANUAL, "sla").id
    assert r.history(resolved, Action.ESCALATE) == [] and r.history(fresh, Action.ESCALATE) == []
    webhook = r.w.delivery(other, TargetSystem.WEBHOOK, tenant="tenant-b")
    assert webhook.state is DeliveryState.PENDING and webhook.actor_id == "sla-escalation"
    # Later, the fresh one becomes overdue too.
    r.w.clock.now += timedelta(hours=2)
    assert r.service.escalate_overdue() == 1 and len(r.history(fresh, Action.ESCALATE)) == 1


def test_the_escalation_backlog_counts_what_the_next_rounds_would_escalate(r):
    SlaService(r.w.uow, r.w.clock).put(A, [("CRITICAL", 1)], "MANUAL", "sla")
    old = r.w.clock.now - timedelta(hours=2)
    late = [r.exception(severity=Severity.CRITICAL, occurred_at=old) for _ in range(3)]
    fresh = r.exception(severity=Severity.CRITICAL)
    r.exception(principal=B, severity=Severity.CRITICAL, occurred_at=old)  # B has no escalation target
    assert r.service.escalation_backlog() == 3
    assert r.service.escalation_backlog(cap=2) == 2  # counted no further than the cap per tenant
    r.w.exceptions.bulk_resolve(A, late[:1], "done", "")
    assert r.service.escalation_backlog() == 2
    assert r.service.escalate_overdue() == 2
    assert r.service.escalation_backlog() == 0
    r.w.clock.now += timedelta(hours=2)
    assert r.service.escalation_backlog() == 1 and r.history(fresh, Action.ESCALATE) == []


def test_no_escalation_target_means_no_escalation(r):
    r.exception(severity=Severity.CRITICAL, occurred_at=r.w.clock.now - timedelta(days=3))
    assert r.service.escalate_overdue() == 0
    assert r.w.uow.rows.deliveries == {}
