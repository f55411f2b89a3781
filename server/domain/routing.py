"""Routing rules (API.md §8): their validation and the pure matcher.

A rule's conditions all must hold (those left out do not constrain); rules run in priority order,
lowest first, and the first enabled rule that matches routes the exception. Nothing here reads a
clock or storage: `now` comes in, so the matcher is a function of its arguments (property-tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from server.domain.dispatch import TargetSystem
from server.domain.errors import FailedPrecondition, FieldViolation, Violations
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.history import Action, HistoryEntry, change
from server.domain.sla import SlaPolicy, with_due_date

LIMITS = {
    "name": 255,
    "queue": 255,
    "assignee": 255,
    "severity_reason": 1000,
    "sources": 50,
    "source": 255,
    "reason_contains": 255,
    "metadata_entries": 50,
    "metadata_key": 64,
    "metadata_value": 1000,
    "min_age_hours": 87600,  # ten years
    "priority": 1_000_000,
}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_AMOUNT = re.compile(r"^\d{1,18}(\.\d{1,4})?$")


@dataclass(frozen=True)
class Conditions:
    severities: frozenset[Severity] = frozenset()
    min_amount: Decimal | None = None
    currency: str | None = None
    min_age_hours: int | None = None
    sources: tuple[str, ...] = ()
    reason_contains: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleAction:
    target: TargetSystem
    queue: str = ""
    assignee: str | None = None
    severity: Severity | None = None
    severity_reason: str | None = None


@dataclass(frozen=True)
class RoutingRule:
    id: str
    tenant_id: str
    name: str
    priority: int
    enabled: bool
    conditions: Conditions
    action: RuleAction
    auto_dispatch: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RuleInput:
    """A create or replace body as the caller gave it (already converted from the wire)."""

    name: str
    priority: int | None
    enabled: bool = True
    severities: tuple[str, ...] = ()  # severity names; unknown ones are a field violation
    min_amount: str | None = None
    currency: str | None = None
    min_age_hours: int | None = None
    sources: tuple[str, ...] = ()
    reason_contains: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    target_system: str = ""
    queue: str | None = None
    assignee: str | None = None
    severity: str | None = None
    severity_reason: str | None = None
    auto_dispatch: bool = False


def build_rule(
    rule_id: str, tenant_id: str, item: RuleInput, created_at: datetime, now: datetime
) -> RoutingRule:
    """A validated rule, or every problem at once: 400 field violations, and 422
    UNSUPPORTED_TARGET_SYSTEM (naming action.target_system) when the target system is unknown."""
    v = Violations()
    name = item.name.strip()
    if not name:
        v.add("name", "is required")
    elif len(name) > LIMITS["name"]:
        v.add("name", f"must be at most {LIMITS['name']} characters")
    if item.priority is None:
        v.add("priority", "is required")
    elif not 0 <= item.priority <= LIMITS["priority"]:
        v.add("priority", f"must be between 0 and {LIMITS['priority']}")
    conditions = _conditions(item, v)
    action, unknown_target = _action(item, v)
    v.raise_if_any()
    if unknown_target:
        raise FailedPrecondition(
            f"action.target_system: unsupported target system {item.target_system.strip()[:40]!r}; "
            f"use one of {', '.join(t.value for t in TargetSystem)}",
            reason="UNSUPPORTED_TARGET_SYSTEM",
            violations=(FieldViolation("action.target_system", "is not a supported target system"),),
        )
    assert action is not None and item.priority is not None
    return RoutingRule(
        id=rule_id,
        tenant_id=tenant_id,
        name=name,
        priority=item.priority,
        enabled=item.enabled,
        conditions=conditions,
        action=action,
        auto_dispatch=item.auto_dispatch,
        created_at=created_at,
        updated_at=now,
    )


def _conditions(item: RuleInput, v: Violations) -> Conditions:
    severities: set[Severity] = set()
    for name in item.severities:
        try:
            severities.add(Severity[name.strip().upper()])
        except KeyError:
            v.add("conditions.severities", "must list LOW, MEDIUM, HIGH or CRITICAL")
            break
    min_amount = None
    if item.min_amount is not None:
        if not _AMOUNT.match(item.min_amount):
            v.add("conditions.min_amount", "must be a non-negative decimal string like 1000.00")
        else:
            min_amount = Decimal(item.min_amount)
        if item.currency is None:
            v.add("conditions.currency", "is required with min_amount")
    if item.currency is not None:
        if not _CURRENCY.match(item.currency):
            v.add("conditions.currency", "must be an ISO 4217 code like USD")
        elif item.min_amount is None:
            v.add("conditions.currency", "applies only together with min_amount")
    if item.min_age_hours is not None and not 0 <= item.min_age_hours <= LIMITS["min_age_hours"]:
        v.add("conditions.min_age_hours", f"must be between 0 and {LIMITS['min_age_hours']}")
    if len(item.sources) > LIMITS["sources"]:
        v.add("conditions.sources", f"must list at most {LIMITS['sources']} sources")
    elif any(not s or len(s) > LIMITS["source"] for s in item.sources):
        v.add("conditions.sources", f"each must be 1-{LIMITS['source']} characters")
    reason = item.reason_contains
    if reason is not None and len(reason) > LIMITS["reason_contains"]:
        v.add("conditions.reason_contains", f"must be at most {LIMITS['reason_contains']} characters")
    if len(item.metadata) > LIMITS["metadata_entries"]:
        v.add("conditions.metadata", f"must have at most {LIMITS['metadata_entries']} entries")
    for key, value in item.metadata.items():
        if not key or len(key) > LIMITS["metadata_key"]:
            v.add("conditions.metadata", f"keys must be 1-{LIMITS['metadata_key']} characters")
            break
        if len(value) > LIMITS["metadata_value"]:
            v.add(f"conditions.metadata.{key}", f"must be at most {LIMITS['metadata_value']} characters")
    conditions = Conditions(
        severities=frozenset(severities),
        min_amount=min_amount,
        currency=item.currency if min_amount is not None else None,
        min_age_hours=item.min_age_hours,
        sources=tuple(dict.fromkeys(item.sources)),
        reason_contains=reason or None,
        metadata=dict(item.metadata),
    )
    given = (
        item.severities,
        item.min_amount is not None,
        item.currency is not None,
        item.min_age_hours is not None,
        item.sources,
        item.reason_contains,
        item.metadata,
    )
    if not any(given):
        v.add("conditions", "must give at least one condition (a catch-all rule can use every severity)")
    return conditions


def _action(item: RuleInput, v: Violations) -> tuple[RuleAction | None, bool]:
    target = None
    unknown = False
    if not item.target_system.strip():
        v.add("action.target_system", "is required")
    else:
        try:
            target = TargetSystem(item.target_system.strip().upper())
        except ValueError:
            unknown = True
    for name, value in (("queue", item.queue), ("assignee", item.assignee)):
        if value is not None and len(value) > LIMITS[name]:
            v.add(f"action.{name}", f"must be at most {LIMITS[name]} characters")
    severity = None
    if item.severity is not None:
        try:
            severity = Severity[item.severity.strip().upper()]
        except KeyError:
            v.add("action.severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
        if not (item.severity_reason or "").strip():
            v.add("action.severity_reason", "is required when action.severity is given")
    elif item.severity_reason:
        v.add("action.severity_reason", "applies only together with action.severity")
    if item.severity_reason is not None and len(item.severity_reason) > LIMITS["severity_reason"]:
        v.add("action.severity_reason", f"must be at most {LIMITS['severity_reason']} characters")
    if target is None:
        return None, unknown
    action = RuleAction(
        target=target,
        queue=(item.queue or "").strip(),
        assignee=(item.assignee or "").strip() or None,
        severity=severity,
        severity_reason=(item.severity_reason or "").strip() or None if severity else None,
    )
    return action, False


def check_unique_priority(rules: Iterable[RoutingRule], rule: RoutingRule) -> None:
    """422 DUPLICATE_PRIORITY naming `priority` when another rule of the tenant has the same one."""
    for other in rules:
        if other.id != rule.id and other.priority == rule.priority:
            raise FailedPrecondition(
                f"priority: rule {other.id} already has priority {rule.priority}",
                reason="DUPLICATE_PRIORITY",
                violations=(FieldViolation("priority", f"is already used by rule {other.id}"),),
            )


# -- the matcher -------------------------------------------------------------------------------------


def failed_conditions(conditions: Conditions, exception: ReconException, now: datetime) -> list[str]:
    """The names of the conditions that do not hold for the exception at `now` (empty: a match)."""
    failed: list[str] = []
    if conditions.severities and exception.severity not in conditions.severities:
        failed.append("severities")
    if conditions.min_amount is not None:
        if exception.currency != conditions.currency:
            failed.append("currency")
        if exception.amount is None or exception.amount < conditions.min_amount:
            failed.append("min_amount")
    age = now - exception.occurred_at
    if conditions.min_age_hours is not None and age < timedelta(hours=conditions.min_age_hours):
        failed.append("min_age_hours")
    if conditions.sources and exception.source not in conditions.sources:
        failed.append("sources")
    reason = conditions.reason_contains
    if reason and reason.casefold() not in exception.reason.casefold():
        failed.append("reason_contains")
    for key, value in sorted(conditions.metadata.items()):
        if exception.metadata.get(key) != value:
            failed.append(f"metadata.{key}")
    return failed


@dataclass(frozen=True)
class RuleEvaluation:
    rule: RoutingRule
    failed: tuple[str, ...]

    @property
    def matched(self) -> bool:
        return not self.failed


def by_priority(rules: Iterable[RoutingRule]) -> list[RoutingRule]:
    return sorted(rules, key=lambda r: (r.priority, r.id))


def evaluate(rules: Sequence[RoutingRule], exception: ReconException, now: datetime) -> list[RuleEvaluation]:
    """Every rule in priority order with the conditions that failed (a disabled rule fails `enabled`)."""
    results = []
    for rule in by_priority(rules):
        failed = failed_conditions(rule.conditions, exception, now)
        if not rule.enabled:
            failed = ["enabled", *failed]
        results.append(RuleEvaluation(rule, tuple(failed)))
    return results


def route(rules: Sequence[RoutingRule], exception: ReconException, now: datetime) -> RoutingRule | None:
    """The first enabled rule, in priority order, whose conditions all hold; None: NO_ROUTE."""
    for rule in by_priority(rules):
        if rule.enabled and not failed_conditions(rule.conditions, exception, now):
            return rule
    return None


class NoRoute(FailedPrecondition):
    """No enabled rule matches the exception (per item in bulk; 422 for a single dispatch)."""

    def __init__(self) -> None:
        super().__init__("no routing rule matches the exception", reason="NO_ROUTE")


def apply_route(
    exception: ReconException,
    rule: RoutingRule,
    actor_id: str,
    now: datetime,
    policy: SlaPolicy | None = None,
) -> tuple[ReconException, HistoryEntry]:
    """The rule's assignee and severity overrides on the exception, and the ROUTE history entry that
    names the rule, the target and queue it chose, and what it changed. A severity override moves a
    due date the caller did not set to the new severity's tier of `policy`."""
    action = rule.action
    changes: dict[str, object] = {
        "rule_id": rule.id,
        "rule_name": rule.name,
        "target_system": action.target.value,
        "queue": action.queue,
    }
    routed = exception
    if action.assignee is not None and action.assignee != exception.assigned_to:
        changes["assigned_to"] = change(exception.assigned_to, action.assignee)
        status = Status.ASSIGNED if exception.status is Status.OPEN else exception.status
        if status is not exception.status:
            changes["status"] = change(exception.status.name, status.name)
        routed = replace(routed, assigned_to=action.assignee, status=status, updated_at=now)
    if action.severity is not None and action.severity is not exception.severity:
        changes["severity"] = change(exception.severity.name, action.severity.name)
        changes["severity_reason"] = action.severity_reason
        routed = replace(routed, severity=action.severity, updated_at=now)
        if policy is not None and not exception.due_at_explicit:
            routed = with_due_date(routed, policy)
            if routed.due_at != exception.due_at:
                changes["due_at"] = change(_iso(exception.due_at), _iso(routed.due_at))
    entry = HistoryEntry.record(exception.tenant_id, exception.id, Action.ROUTE, actor_id, now, changes)
    return routed, entry


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- stored form (the repositories keep conditions and action as JSON) -----------------------------------


def conditions_to_json(c: Conditions) -> dict[str, object]:
    out: dict[str, object] = {}
    if c.severities:
        out["severities"] = [s.name for s in sorted(c.severities)]
    if c.min_amount is not None:
        out["min_amount"] = str(c.min_amount)
        out["currency"] = c.currency
    if c.min_age_hours is not None:
        out["min_age_hours"] = c.min_age_hours
    if c.sources:
        out["sources"] = list(c.sources)
    if c.reason_contains:
        out["reason_contains"] = c.reason_contains
    if c.metadata:
        out["metadata"] = dict(sorted(c.metadata.items()))
    return out


def conditions_from_json(d: Mapping[str, object]) -> Conditions:
    amount = d.get("min_amount")
    age = d.get("min_age_hours")
    currency = d.get("currency")
    reason = d.get("reason_contains")
    return Conditions(
        severities=frozenset(Severity[str(s)] for s in _strings(d.get("severities"))),
        min_amount=Decimal(str(amount)) if amount is not None else None,
        currency=str(currency) if currency is not None else None,
        min_age_hours=int(str(age)) if age is not None else None,
        sources=tuple(_strings(d.get("sources"))),
        reason_contains=str(reason) if reason else None,
        metadata={str(k): str(v) for k, v in _mapping(d.get("metadata")).items()},
    )


def action_to_json(a: RuleAction) -> dict[str, object]:
    out: dict[str, object] = {"target_system": a.target.value, "queue": a.queue}
    if a.assignee is not None:
        out["assignee"] = a.assignee
    if a.severity is not None:
        out["severity"] = a.severity.name
        out["severity_reason"] = a.severity_reason
    return out


def action_from_json(d: Mapping[str, object]) -> RuleAction:
    assignee = d.get("assignee")
    severity = d.get("severity")
    reason = d.get("severity_reason")
    return RuleAction(
        target=TargetSystem(str(d["target_system"])),
        queue=str(d.get("queue") or ""),
        assignee=str(assignee) if assignee is not None else None,
        severity=Severity[str(severity)] if severity is not None else None,
        severity_reason=str(reason) if reason is not None else None,
    )


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[object, object]:
    return value if isinstance(value, dict) else {}
