"""RoutingService over the in-memory fakes: CRUD per tenant, duplicate priorities, evaluate, and the
rules cache (one generation read per use; the rules read again only after a change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.domain.auth import SCOPES, Principal
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.exceptions import NewException, Severity
from server.domain.routing import RuleInput
from server.services.exceptions import ExceptionService
from server.services.routing import RoutingService, RulesCache
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))


def rule_input(priority: int, **fields) -> RuleInput:
    values = {"name": f"p{priority}", "priority": priority, "severities": ("HIGH",)}
    values["target_system"] = "MANUAL"
    values.update(fields)
    return RuleInput(**values)


class World:
    def __init__(self) -> None:
        self.uow = FakeUnitOfWorkFactory()
        self.clock = Clock(NOW)
        self.routing = RoutingService(self.uow, RulesCache(), self.clock)
        self.exceptions = ExceptionService(self.uow, self.clock)


@pytest.fixture
def world() -> World:
    return World()


def test_crud_keeps_tenants_apart_and_lists_by_priority(world):
    late = world.routing.create(A, rule_input(20))
    early = world.routing.create(A, rule_input(10, queue="OPS"))
    world.routing.create(B, rule_input(10))  # another tenant may use the same priority
    assert [r.id for r in world.routing.list(A)] == [early.id, late.id]
    assert world.routing.get(A, early.id) == early
    with pytest.raises(NotFound):
        world.routing.get(B, early.id)
    world.clock.now = NOW + timedelta(minutes=1)
    changed = world.routing.replace(A, early.id, rule_input(30, enabled=False))
    assert changed.created_at == NOW and changed.updated_at == NOW + timedelta(minutes=1)
    assert [r.id for r in world.routing.list(A)] == [late.id, early.id]
    with pytest.raises(NotFound):
        world.routing.replace(B, early.id, rule_input(40))
    with pytest.raises(NotFound):
        world.routing.delete(B, early.id)
    world.routing.delete(A, early.id)
    assert [r.id for r in world.routing.list(A)] == [late.id]
    with pytest.raises(InvalidArgument):
        world.routing.get(A, "not-a-uuid")


def test_duplicate_priorities_are_refused_and_change_nothing(world):
    first = world.routing.create(A, rule_input(10))
    other = world.routing.create(A, rule_input(11))
    for call in (
        lambda: world.routing.create(A, rule_input(10)),
        lambda: world.routing.replace(A, other.id, rule_input(10)),
    ):
        with pytest.raises(FailedPrecondition) as caught:
            call()
        assert caught.value.reason == "DUPLICATE_PRIORITY"
    assert world.routing.list(A) == [first, other]
    world.routing.replace(A, first.id, rule_input(10, name="same priority, same rule"))


def test_the_cache_reads_rules_only_after_a_change(world):
    world.routing.create(A, rule_input(10))
    cache = world.routing.cache
    for _ in range(5):
        assert len(world.routing.list(A)) == 1
    assert cache.loads == 1
    world.routing.create(A, rule_input(11))  # bumps the generation
    assert len(world.routing.list(A)) == 2
    assert cache.loads == 2
    # Another process (its own cache, same database) sees the change at its next use.
    other = RoutingService(world.uow, RulesCache(), world.clock)
    assert len(other.list(A)) == 2
    world.routing.delete(A, world.routing.list(A)[0].id)
    assert len(other.list(A)) == 1


def test_the_cache_reports_hits_misses_reloads_and_evictions(world):
    events: list[str] = []
    routing = RoutingService(world.uow, RulesCache(max_tenants=1, observe=events.append), world.clock)
    routing.create(A, rule_input(10))
    routing.list(A)
    routing.list(A)
    assert events == ["miss", "hit"]
    routing.create(A, rule_input(11))  # the generation moves
    routing.list(A)
    assert events[-1] == "reload"
    routing.list(B)  # a second tenant in a one-tenant cache pushes the first out
    assert events[-2:] == ["miss", "eviction"]
    routing.list(A)
    assert events[-2:] == ["miss", "eviction"]
    assert (events.count("hit"), routing.cache.loads) == (1, 4)


def test_evaluate_explains_every_rule(world):
    new = NewException("txn", severity=Severity.HIGH, amount="50.00", currency="USD")
    e = world.exceptions.create(A, new)
    world.routing.create(A, rule_input(1, severities=("LOW",)))
    disabled = world.routing.create(A, rule_input(2, enabled=False))
    big = world.routing.create(A, rule_input(3, min_amount="100", currency="USD", severities=()))
    hit = world.routing.create(A, rule_input(4, queue="Q"))
    result = world.routing.evaluate(A, e.id)
    assert result.matched == hit
    assert [(r.rule.priority, r.failed) for r in result.rules] == [
        (1, ("severities",)),
        (2, ("enabled",)),
        (3, ("min_amount",)),
        (4, ()),
    ]
    assert disabled.id != big.id
    with pytest.raises(NotFound):
        world.routing.evaluate(B, e.id)
