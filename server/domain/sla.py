"""SLA policy per tenant (API.md §8): hours to resolve by severity, counted from occurred_at, and an
optional escalation target for exceptions that become overdue unresolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from server.domain.dispatch import TargetSystem
from server.domain.errors import FailedPrecondition, FieldViolation, Violations
from server.domain.exceptions import ReconException, Severity, Status

# The seed product's tiers.
DEFAULT_TIERS: dict[Severity, int] = {
    Severity.CRITICAL: 24,
    Severity.HIGH: 72,
    Severity.MEDIUM: 120,
    Severity.LOW: 168,
}
MAX_DUE_IN_HOURS = 87600  # ten years


@dataclass(frozen=True)
class SlaPolicy:
    tenant_id: str
    tiers: Mapping[Severity, int] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    escalation_target: TargetSystem | None = None
    escalation_queue: str = ""
    updated_at: datetime | None = None  # None: the defaults, never stored

    def due_at(self, severity: Severity, occurred_at: datetime) -> datetime:
        return occurred_at + timedelta(hours=self.tiers.get(severity, DEFAULT_TIERS[severity]))


def default_policy(tenant_id: str) -> SlaPolicy:
    return SlaPolicy(tenant_id)


def build_policy(
    tenant_id: str,
    tiers: list[tuple[str, int]],
    escalation_target: str | None,
    escalation_queue: str,
    now: datetime,
) -> SlaPolicy:
    """A PUT body: tiers given replace those severities, the others keep the defaults; escalation
    absent means none. 400 naming the field for every problem; 422 UNSUPPORTED_TARGET_SYSTEM."""
    v = Violations()
    chosen = dict(DEFAULT_TIERS)
    seen: set[Severity] = set()
    for index, (name, hours) in enumerate(tiers):
        try:
            severity = Severity[name.strip().upper()]
        except KeyError:
            v.add(f"tiers[{index}].severity", "must be LOW, MEDIUM, HIGH or CRITICAL")
            continue
        if severity in seen:
            v.add(f"tiers[{index}].severity", f"{severity.name} is listed twice")
        seen.add(severity)
        if not 1 <= hours <= MAX_DUE_IN_HOURS:
            v.add(f"tiers[{index}].due_in_hours", f"must be between 1 and {MAX_DUE_IN_HOURS}")
        chosen[severity] = hours
    target = None
    queue = escalation_queue.strip()
    if len(queue) > 255:
        v.add("escalation.queue", "must be at most 255 characters")
    unknown = False
    if escalation_target is not None:
        if not escalation_target.strip():
            v.add("escalation.target_system", "is required when escalation is given")
        else:
            try:
                target = TargetSystem(escalation_target.strip().upper())
            except ValueError:
                unknown = True
    elif queue:
        v.add("escalation.queue", "applies only together with escalation.target_system")
    v.raise_if_any()
    if unknown:
        raise FailedPrecondition(
            "escalation.target_system: unsupported target system",
            reason="UNSUPPORTED_TARGET_SYSTEM",
            violations=(FieldViolation("escalation.target_system", "is not a supported target system"),),
        )
    return SlaPolicy(tenant_id, chosen, target, queue if target else "", now)


def with_due_date(exception: ReconException, policy: SlaPolicy) -> ReconException:
    """The exception with its SLA due date unless the caller set one (due_at_explicit)."""
    if exception.due_at_explicit:
        return exception
    return replace(exception, due_at=policy.due_at(exception.severity, exception.occurred_at))


def is_overdue(exception: ReconException, now: datetime) -> bool:
    return exception.status is not Status.RESOLVED and exception.due_at is not None and exception.due_at < now
