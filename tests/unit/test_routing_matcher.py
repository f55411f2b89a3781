"""The routing matcher (server/domain/routing.py): every condition kind at its boundary, priority
order, disabled rules, and rule validation. Property tests draw exceptions and thresholds around each
boundary and check the matcher against the condition's definition."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain.dispatch import TargetSystem
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.routing import (
    Conditions,
    RoutingRule,
    RuleAction,
    RuleInput,
    build_rule,
    check_unique_priority,
    conditions_from_json,
    conditions_to_json,
    evaluate,
    failed_conditions,
    route,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")), deadline=None)


def exc(**fields) -> ReconException:
    values = {
        "id": "00000000-0000-4000-8000-000000000001",
        "tenant_id": "t",
        "transaction_id": "txn",
        "severity": Severity.LOW,
        "status": Status.OPEN,
        "created_at": NOW,
        "updated_at": NOW,
        "occurred_at": NOW,
    }
    values.update(fields)
    return ReconException(**values)


def rule(priority: int = 1, enabled: bool = True, rule_id: str | None = None, **conditions) -> RoutingRule:
    return RoutingRule(
        id=rule_id or f"00000000-0000-4000-8000-{priority:012d}",
        tenant_id="t",
        name=f"r{priority}",
        priority=priority,
        enabled=enabled,
        conditions=Conditions(**conditions),
        action=RuleAction(TargetSystem.MANUAL, f"q{priority}"),
        auto_dispatch=False,
        created_at=NOW,
        updated_at=NOW,
    )


amounts = st.decimals(min_value=0, max_value=Decimal("999999999999999999.9999"), places=4)


@SETTINGS
@given(threshold=amounts, delta=st.decimals(min_value=-1, max_value=1, places=4))
def test_min_amount_holds_exactly_at_and_above_the_threshold(threshold, delta):
    amount = max(Decimal(0), threshold + delta)
    c = Conditions(min_amount=threshold, currency="USD")
    failed = failed_conditions(c, exc(amount=amount, currency="USD"), NOW)
    assert ("min_amount" in failed) == (amount < threshold)
    assert "currency" not in failed


@SETTINGS
@given(threshold=amounts, currency=st.sampled_from(["EUR", "GBP", None]))
def test_min_amount_in_another_currency_or_without_an_amount_fails(threshold, currency):
    c = Conditions(min_amount=threshold, currency="USD")
    assert "currency" in failed_conditions(c, exc(amount=threshold, currency=currency), NOW)
    assert "min_amount" in failed_conditions(c, exc(amount=None, currency="USD"), NOW)


@SETTINGS
@given(hours=st.integers(0, 87600), offset_seconds=st.integers(-7200, 7200))
def test_min_age_hours_counts_from_occurred_at_to_the_microsecond(hours, offset_seconds):
    occurred = NOW - timedelta(hours=hours) + timedelta(seconds=offset_seconds)
    failed = failed_conditions(Conditions(min_age_hours=hours), exc(occurred_at=occurred), NOW)
    assert ("min_age_hours" in failed) == (offset_seconds > 0)
    just_short = NOW - timedelta(hours=hours) + timedelta(microseconds=1)
    assert failed_conditions(Conditions(min_age_hours=hours), exc(occurred_at=just_short), NOW) == [
        "min_age_hours"
    ]


@SETTINGS
@given(wanted=st.sets(st.sampled_from(list(Severity)), min_size=1), actual=st.sampled_from(list(Severity)))
def test_severities_is_membership(wanted, actual):
    failed = failed_conditions(Conditions(severities=frozenset(wanted)), exc(severity=actual), NOW)
    assert failed == ([] if actual in wanted else ["severities"])


@SETTINGS
@given(sources=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5), source=st.text(max_size=8))
def test_sources_is_exact_membership(sources, source):
    failed = failed_conditions(Conditions(sources=tuple(sources)), exc(source=source), NOW)
    assert failed == ([] if source in sources else ["sources"])


@SETTINGS
@given(needle=st.text(min_size=1, max_size=6), before=st.text(max_size=6), after=st.text(max_size=6))
def test_reason_contains_ignores_case(needle, before, after):
    reason = before + needle.swapcase() + after
    c = Conditions(reason_contains=needle)
    expected = needle.casefold() in reason.casefold()
    assert (failed_conditions(c, exc(reason=reason), NOW) == []) == expected


@SETTINGS
@given(
    wanted=st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), min_size=1, max_size=4),
    actual=st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), max_size=6),
)
def test_metadata_needs_every_entry_exactly(wanted, actual):
    merged = {**actual}
    failed = failed_conditions(Conditions(metadata=wanted), exc(metadata=merged), NOW)
    assert failed == [f"metadata.{k}" for k in sorted(wanted) if merged.get(k) != wanted[k]]
    # Adding the wanted entries always makes it hold; extra entries never hurt.
    assert failed_conditions(Conditions(metadata=wanted), exc(metadata={**actual, **wanted}), NOW) == []


@SETTINGS
@given(
    priorities=st.lists(st.integers(0, 1000), min_size=1, max_size=8, unique=True),
    enabled=st.lists(st.booleans(), min_size=8, max_size=8),
    matching=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_route_is_the_lowest_priority_enabled_match_whatever_the_order(priorities, enabled, matching):
    rules = [
        rule(p, enabled=enabled[i], severities=frozenset({Severity.LOW} if matching[i] else {Severity.HIGH}))
        for i, p in enumerate(priorities)
    ]
    chosen = route(list(reversed(rules)), exc(severity=Severity.LOW), NOW)
    candidates = [r for i, r in enumerate(rules) if enabled[i] and matching[i]]
    expected = min(candidates, key=lambda r: r.priority) if candidates else None
    assert chosen == expected
    results = evaluate(rules, exc(severity=Severity.LOW), NOW)
    assert [r.rule.priority for r in results] == sorted(priorities)
    for r in results:
        assert r.matched == (r.rule.enabled and Severity.LOW in r.rule.conditions.severities)
        assert ("enabled" in r.failed) == (not r.rule.enabled)


def test_evaluate_names_every_failed_condition_of_a_rule():
    r = rule(
        1,
        severities=frozenset({Severity.CRITICAL}),
        min_amount=Decimal("100.00"),
        currency="USD",
        min_age_hours=24,
        sources=("bank",),
        reason_contains="missing",
        metadata={"region": "eu", "desk": "fx"},
    )
    e = exc(amount=Decimal("99.99"), currency="EUR", source="ledger", reason="late", metadata={"desk": "fx"})
    (result,) = evaluate([r], e, NOW)
    assert result.failed == (
        "severities",
        "currency",
        "min_amount",
        "min_age_hours",
        "sources",
        "reason_contains",
        "metadata.region",
    )
    assert not result.matched


def test_conditions_survive_their_stored_form():
    c = Conditions(
        severities=frozenset({Severity.HIGH, Severity.LOW}),
        min_amount=Decimal("1000.50"),
        currency="USD",
        min_age_hours=0,
        sources=("a", "b"),
        reason_contains="x",
        metadata={"k": "v"},
    )
    assert conditions_from_json(conditions_to_json(c)) == c


# -- validation ---------------------------------------------------------------------------------------


def build(**fields):
    values = {"name": "r", "priority": 1, "severities": ("HIGH",), "target_system": "jira"}
    values.update(fields)
    return build_rule("00000000-0000-4000-8000-000000000009", "t", RuleInput(**values), NOW, NOW)


def violations(call) -> set[str]:
    with pytest.raises(DomainError) as caught:
        call()
    return {v.field for v in caught.value.violations}


def test_a_valid_rule_is_normalised():
    r = build(target_system=" servicenow ", queue="OPS", severity="critical", severity_reason="big")
    assert r.action == RuleAction(TargetSystem.SERVICENOW, "OPS", None, Severity.CRITICAL, "big")
    assert r.conditions.severities == {Severity.HIGH}


def test_an_empty_condition_set_is_refused_naming_conditions():
    assert violations(lambda: build(severities=())) == {"conditions"}


def test_a_severity_override_needs_its_reason():
    assert violations(lambda: build(severity="HIGH")) == {"action.severity_reason"}
    assert violations(lambda: build(severity="HIGH", severity_reason="  ")) == {"action.severity_reason"}
    assert violations(lambda: build(severity_reason="why")) == {"action.severity_reason"}


def test_an_unknown_target_system_is_a_422_naming_the_field():
    with pytest.raises(FailedPrecondition) as caught:
        build(target_system="email")
    assert caught.value.reason == "UNSUPPORTED_TARGET_SYSTEM"
    assert [v.field for v in caught.value.violations] == ["action.target_system"]


def test_field_problems_are_reported_together():
    got = violations(
        lambda: build(
            name="",
            priority=None,
            severities=("SEVERITY_UNSPECIFIED",),
            min_amount="-1",
            currency="usd",
            min_age_hours=-1,
            target_system="",
        )
    )
    assert got == {
        "name",
        "priority",
        "conditions.severities",
        "conditions.min_amount",
        "conditions.currency",
        "conditions.min_age_hours",
        "action.target_system",
    }
    with pytest.raises(InvalidArgument):
        build(min_amount="10")  # currency missing
    assert violations(lambda: build(currency="USD")) == {"conditions.currency"}


def test_duplicate_priorities_are_a_422_naming_priority():
    first = build()
    clash = RuleInput("s", 1, severities=("LOW",), target_system="MANUAL")
    other = build_rule("00000000-0000-4000-8000-000000000010", "t", clash, NOW, NOW)
    with pytest.raises(FailedPrecondition) as caught:
        check_unique_priority([first], other)
    assert caught.value.reason == "DUPLICATE_PRIORITY"
    assert [v.field for v in caught.value.violations] == ["priority"]
    check_unique_priority([first], first)  # a rule does not clash with itself
