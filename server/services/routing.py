"""Routing rules: CRUD per tenant, evaluate, and the per-process cache that dispatch routes from.

The cache holds each tenant's rules with the tenant's rules generation (a counter every rules write
bumps in its own transaction). Using it costs one primary-key read of that counter; only when the
counter moved (a write here or on any other replica sharing the database) are the rules read again.
So a 100-item routed bulk dispatch reads the rules at most once, and a change made on one replica is
seen by the next call on every other. Writes bump the counter first: on PostgreSQL the upsert locks
the tenant's counter row, so concurrent writes of one tenant run one after the other and the
duplicate-priority check sees the other's committed rule (docs/routing.md).
"""

from __future__ import annotations

import builtins
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from server.domain.auth import Principal
from server.domain.errors import NotFound
from server.domain.exceptions import ReconException, parse_uuid
from server.domain.ports import UnitOfWork, UnitOfWorkFactory
from server.domain.routing import (
    RoutingRule,
    RuleEvaluation,
    RuleInput,
    build_rule,
    check_unique_priority,
    evaluate,
)
from server.services.clock import Clock, utc_now

CACHE_HIT, CACHE_MISS, CACHE_RELOAD, CACHE_EVICTION = "hit", "miss", "reload", "eviction"


class RulesCache:
    """Per tenant: (generation, rules in priority order); at most `max_tenants`, least recently used
    dropped first. Thread-safe; a stale entry is replaced, never used."""

    def __init__(self, max_tenants: int = 1000, observe: Callable[[str], None] | None = None) -> None:
        self._max = max(1, max_tenants)
        self._entries: OrderedDict[str, tuple[int, tuple[RoutingRule, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times rules were read from storage (tests, metrics)
        # Metrics: CACHE_HIT, CACHE_MISS (not held), CACHE_RELOAD (generation moved), CACHE_EVICTION.
        self._observe = observe or (lambda event: None)

    def rules(self, uow: UnitOfWork, tenant_id: str) -> tuple[RoutingRule, ...]:
        generation = uow.routing.generation(tenant_id)
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None and entry[0] == generation:
                self._entries.move_to_end(tenant_id)
                hit = entry[1]
            else:
                hit = None
        if hit is not None:
            self._observe(CACHE_HIT)
            return hit
        self._observe(CACHE_MISS if entry is None else CACHE_RELOAD)
        rules = tuple(uow.routing.list(tenant_id))
        evicted = 0
        with self._lock:
            self.loads += 1
            current = self._entries.get(tenant_id)
            # Keep the newer of two concurrent loads (generations only grow).
            if current is None or current[0] <= generation:
                self._entries[tenant_id] = (generation, rules)
                self._entries.move_to_end(tenant_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
                evicted += 1
        for _ in range(evicted):
            self._observe(CACHE_EVICTION)
        return rules


@dataclass(frozen=True)
class Evaluation:
    exception: ReconException
    matched: RoutingRule | None
    rules: list[RuleEvaluation]


class RoutingService:
    def __init__(
        self, uow: UnitOfWorkFactory, cache: RulesCache | None = None, clock: Clock = utc_now
    ) -> None:
        self._uow = uow
        self.cache = cache or RulesCache()
        self._clock = clock

    def create(self, principal: Principal, item: RuleInput) -> RoutingRule:
        now = self._clock()
        tenant = principal.tenant_id
        rule = build_rule(str(uuid.uuid4()), tenant, item, now, now)
        with self._uow(write=True) as uow:
            uow.routing.bump_generation(tenant)  # first: serializes the tenant's rules writes
            check_unique_priority(uow.routing.list(tenant), rule)
            uow.routing.add(rule)
        return rule

    def list(self, principal: Principal) -> builtins.list[RoutingRule]:
        with self._uow(write=False) as uow:
            return list(self.cache.rules(uow, principal.tenant_id))

    def get(self, principal: Principal, rule_id: str) -> RoutingRule:
        rule_id = parse_uuid(rule_id, "rule_id")
        with self._uow(write=False) as uow:
            rule = uow.routing.get(principal.tenant_id, rule_id)
        if rule is None:
            raise NotFound("routing rule not found")
        return rule

    def replace(self, principal: Principal, rule_id: str, item: RuleInput) -> RoutingRule:
        rule_id = parse_uuid(rule_id, "rule_id")
        now = self._clock()
        tenant = principal.tenant_id
        checked = build_rule(rule_id, tenant, item, now, now)  # 400s before any lock
        with self._uow(write=True) as uow:
            uow.routing.bump_generation(tenant)
            previous = uow.routing.get(tenant, rule_id)
            if previous is None:
                raise NotFound("routing rule not found")
            rule = replace(checked, created_at=previous.created_at)
            check_unique_priority(uow.routing.list(tenant), rule)
            uow.routing.replace(rule)
        return rule

    def delete(self, principal: Principal, rule_id: str) -> None:
        rule_id = parse_uuid(rule_id, "rule_id")
        with self._uow(write=True) as uow:
            uow.routing.bump_generation(principal.tenant_id)
            if not uow.routing.delete(principal.tenant_id, rule_id):
                raise NotFound("routing rule not found")

    def evaluate(self, principal: Principal, exception_id: str) -> Evaluation:
        exception_id = parse_uuid(exception_id, "exception_id")
        with self._uow(write=False) as uow:
            exception = uow.exceptions.get(principal.tenant_id, exception_id)
            if exception is None:
                raise NotFound("exception not found")
            rules = self.cache.rules(uow, principal.tenant_id)
        results = evaluate(rules, exception, self._clock())
        matched = next((r.rule for r in results if r.matched), None)
        return Evaluation(exception, matched, results)
