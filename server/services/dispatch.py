"""Dispatching exceptions to target systems, one at a time or up to 100 at once (API.md §3, §7).

A dispatch records its intent; the delivery workers carry it out (server/delivery/, docs/delivery.md):
1. read the exceptions, the tenant's target configuration (422 TARGET_NOT_CONFIGURED before any item
   is touched) and the deliveries that exist for the same (exception, target, queue);
2. write one delivery per item that has none (PENDING, due now), or join the one that exists: a
   DELIVERED one answers its ticket again, a PENDING or IN_FLIGHT one is waited for, a FAILED or
   CANCELLED one is made due again (dispatching again means "try again");
3. commit, wake this process's workers, and wait up to DISPATCH_WAIT_SECONDS for each item's first
   outcome; items still being retried then answer DELIVERY_SCHEDULED with their delivery id.
Nothing here calls a target, and the wait holds no transaction or lock.

Transactions: the deliveries commit on their own, before the wait, so the workers (of any replica)
can see them; the idempotency interceptor then stores the answer in its own transaction. A request
that dies in between leaves its key in progress until the lock timeout; the retry joins the same
deliveries (one source of truth) and answers from their state. When the call runs inside a
transaction that has already begun (a keyed /v1/bulk after a write), the deliveries join it and the
call answers at once: nothing can be delivered before that transaction commits.

MANUAL never leaves the process: its deliveries are DELIVERED in the call's own transaction (under
an idempotency key, together with the stored answer), with the exception's ticket and DISPATCH
history, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from server.domain.auth import Principal
from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.delivery import (
    ESCALATION_ACTOR,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryFailed,
    DeliveryScheduled,
    DeliveryState,
    ticket_recorded,
)
from server.domain.dispatch import (
    Connector,
    TargetSystem,
    TicketRef,
    TicketRequest,
    dispatch_key,
    parse_target_request,
)
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from server.domain.exceptions import ReconException, Status, parse_uuid
from server.domain.history import Action, HistoryEntry
from server.domain.ports import ConnectorFactory, UnitOfWork, UnitOfWorkFactory
from server.domain.routing import NoRoute, RoutingRule, apply_route, route
from server.domain.sla import default_policy
from server.domain.targets import TargetConfig
from server.services.clock import Clock, utc_now
from server.services.deliveries import DeliveryService
from server.services.slots import Slots

Result = Delivery | DomainError


@dataclass
class _Plan:
    results: dict[str, Result] = field(default_factory=dict)
    # Items that have a delivery to wait for (new, revived or joined), by exception id.
    waiting: dict[str, Delivery] = field(default_factory=dict)
    new: list[Delivery] = field(default_factory=list)
    revived: list[Delivery] = field(default_factory=list)


@dataclass
class _Recorded:
    """One (target, queue)'s deliveries, written: answers so far, and the deliveries to wait for
    (`inside`: written in a transaction still open, so nothing can be delivered before the call
    ends: answered at once)."""

    target: TargetSystem
    ids: list[str]
    results: dict[str, Result]
    waiting: dict[str, Delivery]
    floors: dict[str, int]
    inside: bool


class TargetConfigs(Protocol):
    """What dispatch needs from the target service (services/targets.py implements it)."""

    def config_for(self, uow: UnitOfWork, tenant_id: str, target: TargetSystem) -> TargetConfig | None: ...


class RoutingRules(Protocol):
    """The per-process rules cache (services/routing.py implements it)."""

    def rules(self, uow: UnitOfWork, tenant_id: str) -> Sequence[RoutingRule]: ...


class WaitSlots:
    """How many dispatch calls may wait for first outcomes at once, in all and per tenant. A call
    that finds no place answers at once (its items DELIVERY_SCHEDULED): waiting is a courtesy that
    no tenant may turn into holding every thread."""

    def __init__(self, total: int, per_tenant: int) -> None:
        self._slots = Slots({"all": total, "tenant": per_tenant})

    def try_take(self, tenant: str) -> bool:
        return self._slots.try_take(all="", tenant=tenant)

    def give_back(self, tenant: str) -> None:
        self._slots.give_back(all="", tenant=tenant)

    def waiting(self) -> int:
        return self._slots.held("all")


class DispatchService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        targets: TargetConfigs,
        connectors: ConnectorFactory,
        deliveries: DeliveryService,
        *,
        clock: Clock = utc_now,
        wait_seconds: float = 10.0,
        wait_slots: WaitSlots | None = None,
        poll_seconds: float = 0.2,
        observe: Callable[[str, str], None] | None = None,
        rules: RoutingRules | None = None,
    ) -> None:
        # The tenant's routing rules for dispatches without a target (services/routing.py).
        self._rules = rules
        # (target, outcome) per dispatched item, outcome "succeeded" or the failure's reason: metrics.
        self._observe = observe
        self._uow = uow
        self._targets = targets
        self._connectors = connectors
        self._deliveries = deliveries
        self._clock = clock
        self._wait_seconds = wait_seconds
        self.wait_slots = wait_slots or WaitSlots(32, 8)
        self._poll_seconds = poll_seconds

    def dispatch(self, principal: Principal, exception_id: str, target_system: str, queue: str) -> Delivery:
        """Single dispatch: the delivery, DELIVERED or still being retried (202); a refusal raises.
        Without a target system the routing rules choose (API.md §8): 422 NO_ROUTE when none matches."""
        exception_id = parse_uuid(exception_id, "exception_id")
        if not target_system.strip():
            _no_queue_without_target(queue)
            result = self._routed(principal, [exception_id], strict=True)[exception_id]
        else:
            target, queue = parse_target_request(target_system, queue)
            result = self._observed(target, self._run(principal, [exception_id], target, queue))[exception_id]
        if isinstance(result, DeliveryScheduled):
            return result.delivery
        if isinstance(result, DomainError):
            raise result
        return result

    def bulk_dispatch(
        self, principal: Principal, raw_ids: list[str], target_system: str, queue: str
    ) -> BulkOutcome:
        ids = unique_ids(raw_ids)
        if not target_system.strip():
            _no_queue_without_target(queue)
            results = self._routed(principal, ids, strict=False)
        else:
            target, queue = parse_target_request(target_system, queue)
            results = self._observed(target, self._run(principal, ids, target, queue))
        outcome = BulkOutcome(ids)
        for eid, result in results.items():
            if isinstance(result, DomainError):
                outcome.fail(eid, result)
            else:
                outcome.succeeded.append(eid)
        return outcome.in_request_order()

    def _observed(self, target: TargetSystem, results: dict[str, Result]) -> dict[str, Result]:
        if self._observe is not None:
            for result in results.values():
                self._observe(target.value, result.reason if isinstance(result, DomainError) else "succeeded")
        return results

    def _routed(self, principal: Principal, ids: list[str], *, strict: bool) -> dict[str, Result]:
        """Dispatch by the tenant's routing rules: each item goes where the first enabled rule that
        matches it says (its overrides and a ROUTE history entry are written with its delivery).
        The rules come from the per-process cache: one generation read per call, never per item.
        Groups of one (target, queue) run like an explicit dispatch: those leaving the process first
        (each commits its deliveries) and one wait for all their items' first outcomes, then MANUAL
        (in the call's transaction). strict (single dispatch): a group's refusal, such as
        TARGET_NOT_CONFIGURED, is raised; in bulk it is each item's failure."""
        tenant = principal.tenant_id
        now = self._clock()
        # A read of its own unless the call's transaction has begun (then it must see that
        # transaction's writes): joining would begin it, and the deliveries could then not commit
        # before the wait.
        with self._uow(write=False, join=self._uow.in_transaction()) as uow:
            found = uow.exceptions.get_many(tenant, ids)
            rules = self._rules.rules(uow, tenant) if self._rules is not None else ()
        results: dict[str, Result] = {}
        groups: dict[tuple[TargetSystem, str], dict[str, RoutingRule]] = {}
        for eid in ids:
            exception = found.get(eid)
            if exception is None:
                results[eid] = NotFound("exception not found")
            elif exception.status is Status.RESOLVED:
                results[eid] = FailedPrecondition("exception is resolved", reason="INVALID_STATE")
            elif (rule := route(rules, exception, now)) is None:
                results[eid] = NoRoute()
            else:
                groups.setdefault((rule.action.target, rule.action.queue), {})[eid] = rule
        if self._observe is not None:
            for result in results.values():
                self._observe("ROUTING", result.reason if isinstance(result, DomainError) else "succeeded")
        # Those leaving the process first, each committing its deliveries, and one wait for all of
        # them; MANUAL after the wait: it joins (and begins) the call's transaction, which on SQLite
        # holds the write lock the workers need to record outcomes.
        order = sorted(groups, key=lambda g: (g[0].value, g[1]))
        local = [g for g in order if self._connectors.is_local(g[0])]
        for phase in ([g for g in order if g not in local], local):
            recorded: list[_Recorded] = []
            for target, queue in phase:
                routed = groups[(target, queue)]
                try:
                    recorded.append(self._record(principal, list(routed), target, queue, routed))
                except DomainError as exc:
                    if strict:
                        raise
                    results.update({eid: exc for eid in routed})
                    self._observed(target, {eid: exc for eid in routed})
            settled = self._settle(tenant, recorded)
            for rec in recorded:
                self._observed(rec.target, {eid: settled[eid] for eid in rec.ids})
            results.update(settled)
        return results

    # -- the steps -------------------------------------------------------------------------------

    def _run(
        self, principal: Principal, ids: list[str], target: TargetSystem, queue: str
    ) -> dict[str, Result]:
        return self._settle(principal.tenant_id, [self._record(principal, ids, target, queue)])

    def _record(
        self,
        principal: Principal,
        ids: list[str],
        target: TargetSystem,
        queue: str,
        routed: dict[str, RoutingRule] | None = None,
    ) -> _Recorded:
        """Steps 1 and 2 for one (target, queue): the deliveries written (MANUAL: delivered). routed:
        the rule that chose this target for each item, whose overrides are written with it."""
        local = self._connectors.is_local(target)
        inside = self._uow.in_transaction()
        tenant = principal.tenant_id
        keys = {eid: dispatch_key(target, eid, queue) for eid in ids}
        if not routed and (answered := self._answered(principal, ids, keys, target, inside)):
            return answered
        # MANUAL joins the call's transaction (it commits with the stored answer); the others commit
        # their deliveries on their own unless a transaction has begun already.
        with self._uow(write=True, join=local or inside) as uow:
            connector = self._connector(uow, tenant, target)
            found = uow.exceptions.get_many(tenant, ids)
            existing = uow.deliveries.get_by_keys(tenant, keys.values())
            plan = self._plan(principal, ids, keys, found, existing, target, queue)
            if routed:
                self._apply_routes(uow, principal, plan, found, routed)
            if local:
                results = self._deliver_here(uow, principal, connector, plan, found)
                return _Recorded(target, ids, results, {}, {}, inside=True)
            uow.deliveries.add_many(plan.new)
            uow.deliveries.update_many(plan.revived)
        floors = {d.id: d.attempt_count for d in plan.revived}
        return _Recorded(target, ids, plan.results, plan.waiting, floors, inside)

    def _connector(self, uow: UnitOfWork, tenant: str, target: TargetSystem) -> Connector:
        """The target's connector from the tenant's configuration as stored now (raises
        TARGET_NOT_CONFIGURED). Builds an object; no call goes out."""
        return self._connectors.build(target, self._targets.config_for(uow, tenant, target))

    def _answered(
        self,
        principal: Principal,
        ids: list[str],
        keys: dict[str, str],
        target: TargetSystem,
        inside: bool,
    ) -> _Recorded | None:
        """A dispatch repeated (a retrying client, eight callers at once): when every item was
        delivered there already, the answer is those deliveries, from one read without locks, with
        nothing written; None otherwise (then _record reads again, locking). Without it each repeat
        took the exceptions' row locks (PostgreSQL) or the write lock (SQLite) in turn for nothing
        (docs/benchmarks.md "A dispatch repeated"). The answers are the locked path's: a DELIVERED
        delivery is final, its exception exists (exceptions are never deleted) and the target's
        configuration is checked the same way."""
        tenant = principal.tenant_id
        # Within a transaction that has begun, its own writes must be seen: join it.
        with self._uow(write=False, join=inside) as uow:
            self._connector(uow, tenant, target)  # TARGET_NOT_CONFIGURED as on the locked path
            existing = uow.deliveries.get_by_keys(tenant, keys.values())
        delivered: dict[str, Result] = {}
        for eid in ids:
            delivery = existing.get(keys[eid])
            if delivery is None or delivery.state is not DeliveryState.DELIVERED:
                return None
            delivered[eid] = delivery
        return _Recorded(target, ids, delivered, {}, {}, inside)

    def _apply_routes(
        self,
        uow: UnitOfWork,
        principal: Principal,
        plan: _Plan,
        found: dict[str, ReconException],
        routed: dict[str, RoutingRule],
    ) -> None:
        """The rules' overrides and ROUTE entries for the items that go ahead (not those answered
        already, such as one dispatched there before)."""
        now = self._clock()
        updated: list[ReconException] = []
        history: list[HistoryEntry] = []
        policy = None
        if any(routed[eid].action.severity is not None for eid in plan.waiting):
            policy = uow.sla.get(principal.tenant_id) or default_policy(principal.tenant_id)
        for eid in plan.waiting:
            changed, entry = apply_route(found[eid], routed[eid], principal.token_id, now, policy)
            if changed is not found[eid]:  # an override changed it (otherwise: the ROUTE entry alone)
                found[eid] = changed
                updated.append(changed)
            history.append(entry)
        uow.exceptions.update_many(updated)
        uow.history.add_many(history)

    def _settle(self, tenant: str, recorded: list[_Recorded]) -> dict[str, Result]:
        """Step 3 for every recorded group at once: wake the workers and wait (one wait for all)."""
        results: dict[str, Result] = {}
        waiting: dict[str, Delivery] = {}
        joined: dict[str, Delivery] = {}
        floors: dict[str, int] = {}
        for rec in recorded:
            results.update(rec.results)
            (joined if rec.inside else waiting).update(rec.waiting)
            floors.update(rec.floors)
        if not waiting and not joined:
            return results
        self._deliveries.wake()
        if waiting:
            # A revived delivery starts a new round: its first outcome is that of its next attempt.
            waiting = self._wait_for_first_outcomes(tenant, waiting, floors)
        for eid, delivery in {**joined, **waiting}.items():
            results[eid] = _answer(delivery)
        return results

    def _plan(
        self,
        principal: Principal,
        ids: list[str],
        keys: dict[str, str],
        found: dict[str, ReconException],
        existing: dict[str, Delivery],
        target: TargetSystem,
        queue: str,
    ) -> _Plan:
        """Answers what needs no delivery; new or revived deliveries for the rest, or the one to join."""
        now = self._clock()
        plan = _Plan()
        for eid in ids:
            exception, delivery = found.get(eid), existing.get(keys[eid])
            if exception is None:
                plan.results[eid] = NotFound("exception not found")
            elif delivery is not None and delivery.state is DeliveryState.DELIVERED:
                plan.results[eid] = delivery  # already dispatched there: the same ticket, never a second
            elif exception.status is Status.RESOLVED:
                plan.results[eid] = FailedPrecondition("exception is resolved", reason="INVALID_STATE")
            elif delivery is None:
                delivery = Delivery.due_now(
                    principal.tenant_id, keys[eid], eid, target, queue, principal.token_id, now
                )
                plan.new.append(delivery)
                plan.waiting[eid] = delivery
            elif delivery.state in (DeliveryState.FAILED, DeliveryState.CANCELLED):
                # Dispatching again means "try again": a new round of retries, for this caller.
                delivery = replace(delivery.retried(now), actor_id=principal.token_id)
                plan.revived.append(delivery)
                plan.waiting[eid] = delivery
            else:
                plan.waiting[eid] = delivery  # PENDING or IN_FLIGHT: join it
        return plan

    def _deliver_here(
        self,
        uow: UnitOfWork,
        principal: Principal,
        connector: Connector,
        plan: _Plan,
        found: dict[str, ReconException],
    ) -> dict[str, Result]:
        """MANUAL: the tickets are made here and now, in this transaction, in batched writes."""
        results = plan.results
        if not plan.waiting:
            return results
        items = list(plan.waiting.items())
        refs = connector.send(
            [TicketRequest(found[eid], d.queue, d.key, d.key, delivery_id=d.id) for eid, d in items]
        )
        now = self._clock()
        new_ids = {d.id for d in plan.new}
        added: list[Delivery] = []
        revived: list[Delivery] = []
        updated: list[ReconException] = []
        history: list[HistoryEntry] = []
        for (eid, delivery), ref in zip(items, refs, strict=True):
            if not isinstance(ref, TicketRef):
                results[eid] = ref
                continue
            done = replace(delivery, attempt_count=delivery.attempt_count + 1).delivered(ref, now)
            (added if done.id in new_ids else revived).append(done)
            results[eid] = done
            ticketed, entry = ticket_recorded(found[eid], done)
            updated.append(ticketed)
            history.append(entry)
        uow.deliveries.add_many(added)
        uow.deliveries.update_many(revived)
        uow.deliveries.add_attempts_many(
            [(d, Attempt(d.attempt_count, now, 0, AttemptOutcome.DELIVERED)) for d in [*added, *revived]]
        )
        uow.exceptions.update_many(updated)
        uow.history.add_many(history)
        return results

    # -- auto_dispatch on create (API.md §8) ----------------------------------------------------

    def on_create(
        self, uow: UnitOfWork, principal: Principal, created: list[ReconException]
    ) -> list[ReconException]:
        """In the create's transaction, after its rows are written: each new exception whose routing
        rule (the first enabled match) has auto_dispatch gets the rule's overrides, a ROUTE entry and
        its delivery, PENDING and due now (MANUAL: delivered here, like a dispatch). Nothing waits for
        the workers; the create answers at once. Returns the exceptions as they now are."""
        if self._rules is None or not created:
            return created
        tenant = principal.tenant_id
        rules = self._rules.rules(uow, tenant)
        if not any(r.auto_dispatch and r.enabled for r in rules):
            return created
        now = self._clock()
        chosen = {}
        for e in created:
            rule = route(rules, e, now)
            if rule is not None and rule.auto_dispatch:
                chosen[e.id] = rule
        if not chosen:
            return created
        policy = None
        if any(r.action.severity is not None for r in chosen.values()):
            policy = uow.sla.get(tenant) or default_policy(tenant)
        by_id = {e.id: e for e in created}
        history: list[HistoryEntry] = []
        for eid, rule in chosen.items():
            by_id[eid], entry = apply_route(by_id[eid], rule, principal.token_id, now, policy)
            history.append(entry)
        uow.exceptions.update_many([by_id[eid] for eid in chosen])
        uow.history.add_many(history)
        groups: dict[tuple[TargetSystem, str], list[str]] = {}
        for eid, rule in chosen.items():
            groups.setdefault((rule.action.target, rule.action.queue), []).append(eid)
        delivered_here = False
        for (target, queue), ids in groups.items():
            plan = _Plan()
            for eid in ids:
                delivery = Delivery.due_now(
                    tenant, dispatch_key(target, eid, queue), eid, target, queue, principal.token_id, now
                )
                plan.new.append(delivery)
                plan.waiting[eid] = delivery
            if self._connectors.is_local(target):
                connector = self._connector(uow, tenant, target)
                self._deliver_here(uow, principal, connector, plan, dict(by_id))
                delivered_here = True
            else:
                # A target that is not configured (yet) is the workers' business: the delivery
                # fails there with TARGET_NOT_CONFIGURED and can be retried once it is.
                uow.deliveries.add_many(plan.new)
        if delivered_here:
            by_id.update(uow.exceptions.get_many(tenant, list(chosen)))
        return [by_id[e.id] for e in created]

    # -- escalation (API.md §8) -------------------------------------------------------------------

    def escalate_overdue(self, batch: int = 100) -> int:
        """Dispatches, once, each unresolved exception past its due date to its tenant's SLA
        escalation target (history ESCALATE), up to `batch` per tenant per call; the delivery
        workers' scheduler calls it every ESCALATION_POLL_SECONDS. Tenants without an escalation
        cost nothing; per tenant one seek on the partial index ix_exceptions_tenant_escalation. Each
        tenant's batch is one transaction that marks the rows escalated, so across replicas an
        exception escalates once (PostgreSQL: FOR UPDATE SKIP LOCKED). How many were escalated."""
        now = self._clock()
        with self._uow(write=False, join=False) as uow:
            policies = uow.sla.with_escalation()
        escalated = 0
        for policy in policies:
            target = policy.escalation_target
            assert target is not None
            principal = Principal(policy.tenant_id, ESCALATION_ACTOR, frozenset())
            # A read first: a tenant with nothing overdue must not take SQLite's write lock.
            with self._uow(write=False, join=False) as uow:
                if not uow.exceptions.overdue_unescalated(policy.tenant_id, now, 1):
                    continue
            with self._uow(write=True, join=False) as uow:
                due = uow.exceptions.overdue_unescalated(policy.tenant_id, now, batch)
                if not due:
                    continue
                marked = [replace(e, escalated_at=now) for e in due]
                uow.exceptions.update_many(marked)
                found = {e.id: e for e in marked}
                queue = policy.escalation_queue
                keys = {e.id: dispatch_key(target, e.id, queue) for e in marked}
                existing = uow.deliveries.get_by_keys(policy.tenant_id, keys.values())
                plan = self._plan(principal, list(found), keys, found, existing, target, queue)
                uow.history.add_many(
                    [
                        HistoryEntry.record(
                            policy.tenant_id,
                            e.id,
                            Action.ESCALATE,
                            ESCALATION_ACTOR,
                            now,
                            {
                                "target_system": target.value,
                                "queue": queue,
                                "due_at": e.due_at.isoformat() if e.due_at else None,
                                "delivery_id": _delivery_id(plan, existing, keys[e.id]),
                            },
                        )
                        for e in marked
                    ]
                )
                if self._connectors.is_local(target):
                    config = self._targets.config_for(uow, policy.tenant_id, target)
                    self._deliver_here(uow, principal, self._connectors.build(target, config), plan, found)
                else:
                    # Not configured (yet): the workers fail the delivery with TARGET_NOT_CONFIGURED,
                    # visible and retryable; the escalation itself is recorded either way.
                    uow.deliveries.add_many(plan.new)
                    uow.deliveries.update_many(plan.revived)
            escalated += len(marked)
        if escalated:
            self._deliveries.wake()
        return escalated

    def escalation_backlog(self, cap: int = 10_000) -> int:
        """How many exceptions escalate_overdue would escalate now: overdue, unresolved and never
        escalated, of the tenants whose SLA policy names an escalation target (the metric sampled
        with the delivery queue). One bounded seek on ix_exceptions_tenant_escalation per such
        tenant, counting at most `cap` per tenant, in one read."""
        now = self._clock()
        with self._uow(write=False, join=False) as uow:
            return sum(
                uow.exceptions.count_overdue_unescalated(policy.tenant_id, now, cap)
                for policy in uow.sla.with_escalation()
            )

    def wake(self) -> None:
        """Tells this process's delivery workers that deliveries are due now."""
        self._deliveries.wake()

    def _wait_for_first_outcomes(
        self, tenant: str, waiting: dict[str, Delivery], floors: dict[str, int]
    ) -> dict[str, Delivery]:
        """Up to DISPATCH_WAIT_SECONDS, holding no transaction, for each item's first outcome (for a
        revived delivery: an attempt beyond the `floors` count it had when it was revived)."""
        if self._wait_seconds <= 0 or not self.wait_slots.try_take(tenant):
            return waiting
        try:
            deadline = time.monotonic() + self._wait_seconds
            by_id = {d.id: eid for eid, d in waiting.items()}
            current = waiting
            while True:
                latest = self._deliveries.latest(tenant, list(by_id))
                current = {by_id[did]: d for did, d in latest.items()}
                left = deadline - time.monotonic()
                if left <= 0 or all(d.has_outcome_after(floors.get(d.id, 0)) for d in current.values()):
                    return current
                with self._deliveries.recorded:
                    self._deliveries.recorded.wait(min(self._poll_seconds, left))
        finally:
            self.wait_slots.give_back(tenant)


def _delivery_id(plan: _Plan, existing: dict[str, Delivery], key: str) -> str:
    for delivery in [*plan.waiting.values(), *existing.values()]:
        if delivery.key == key:
            return delivery.id
    return ""


def _no_queue_without_target(queue: str) -> None:
    if queue.strip():
        raise InvalidArgument.field(
            "queue", "applies only with target_system; without one, the routing rule sets the queue"
        )


def _answer(delivery: Delivery) -> Result:
    if delivery.state is DeliveryState.DELIVERED:
        return delivery
    if delivery.state in (DeliveryState.FAILED, DeliveryState.CANCELLED):
        return DeliveryFailed(delivery)
    return DeliveryScheduled(delivery)
