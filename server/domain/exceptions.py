"""The reconciliation exception: its fields, severity classification and lifecycle rules."""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from server.domain.errors import FailedPrecondition, InvalidArgument, Violations


class Severity(enum.IntEnum):
    # Numbers order the values for sorting (LOW < CRITICAL).
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class Status(enum.IntEnum):
    # Numbers follow the lifecycle, so sorting by status sorts by progress.
    OPEN = 1
    ASSIGNED = 2
    PENDING_RESOLUTION = 3
    RESOLVED = 4


# Thresholds of API.md §3, highest first: (severity, amount at least, age at least).
_CLASSIFICATION = (
    (Severity.CRITICAL, Decimal(100000), timedelta(hours=120)),
    (Severity.HIGH, Decimal(10000), timedelta(hours=72)),
    (Severity.MEDIUM, Decimal(1000), timedelta(hours=24)),
)


def classify_severity(amount: Decimal | None, age: timedelta) -> Severity:
    for severity, min_amount, min_age in _CLASSIFICATION:
        if (amount is not None and abs(amount) >= min_amount) or age >= min_age:
            return severity
    return Severity.LOW


LIMITS = {
    "transaction_id": 255,
    "reason": 1000,
    "source": 255,
    "assignee": 255,
    "resolution": 255,
    "resolution_reason": 1000,
    "metadata_entries": 50,
    "metadata_key": 64,
    "metadata_value": 1000,
}
# fullmatch, ASCII digits only: `$` lets a trailing newline through and `\d` takes any script's
# digits (Decimal reads "١٢٣" as 123).
_CURRENCY = re.compile(r"[A-Z]{3}")
_AMOUNT = re.compile(r"[0-9]{1,18}(\.[0-9]{1,4})?")


@dataclass(frozen=True)
class NewException:
    """Create input as the caller gave it (already converted from the wire)."""

    transaction_id: str
    severity: Severity | None = None
    reason: str = ""
    amount: str | None = None
    currency: str | None = None
    source: str = ""
    due_at: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ReconException:
    id: str
    tenant_id: str
    transaction_id: str
    severity: Severity
    status: Status
    created_at: datetime
    updated_at: datetime
    occurred_at: datetime
    reason: str = ""
    amount: Decimal | None = None
    currency: str | None = None
    source: str = ""
    assigned_to: str | None = None
    due_at: datetime | None = None
    external_system: str | None = None
    external_issue_id: str | None = None
    resolution_notes: str | None = None
    resolution_reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The caller set due_at (kept when severity changes); otherwise it follows the SLA policy.
    due_at_explicit: bool = False
    # When the exception was escalated for being overdue (API.md §8); at most once.
    escalated_at: datetime | None = None

    # Lifecycle: OPEN -> ASSIGNED -> RESOLVED; RESOLVED is final. Each returns a new value.

    def _require_open(self) -> None:
        if self.status is Status.RESOLVED:
            raise FailedPrecondition("exception is resolved", reason="INVALID_STATE")

    def assign(self, assignee: str, now: datetime) -> ReconException:
        self._require_open()
        return replace(self, assigned_to=assignee, status=Status.ASSIGNED, updated_at=now)

    def resolve(self, notes: str, reason: str | None, now: datetime) -> ReconException:
        self._require_open()
        return replace(
            self,
            status=Status.RESOLVED,
            resolution_notes=notes,
            resolution_reason=reason or None,
            updated_at=now,
        )

    def mark_dispatched(self, system: str, reference: str, now: datetime) -> ReconException:
        self._require_open()
        return replace(self, external_system=system, external_issue_id=reference, updated_at=now)


def _check_length(v: Violations, name: str, value: str, limit_key: str, required: bool = False) -> None:
    if required and not value.strip():
        v.add(name, "is required")
    elif len(value) > LIMITS[limit_key]:
        v.add(name, f"must be at most {LIMITS[limit_key]} characters")


def validate_new_exception(item: NewException, now: datetime, prefix: str = "") -> None:
    v = Violations()
    _check_length(v, prefix + "transaction_id", item.transaction_id, "transaction_id", required=True)
    _check_length(v, prefix + "reason", item.reason, "reason")
    _check_length(v, prefix + "source", item.source, "source")
    if item.amount is not None:
        if not _AMOUNT.fullmatch(item.amount):
            v.add(prefix + "amount", "must be a non-negative decimal string like 1250.00")
        if item.currency is None:
            v.add(prefix + "currency", "is required when amount is given")
    if item.currency is not None and not _CURRENCY.fullmatch(item.currency):
        v.add(prefix + "currency", "must be an ISO 4217 code like USD")
    if len(item.metadata) > LIMITS["metadata_entries"]:
        v.add(prefix + "metadata", f"must have at most {LIMITS['metadata_entries']} entries")
    for key, value in item.metadata.items():
        if not key or len(key) > LIMITS["metadata_key"]:
            v.add(prefix + "metadata", f"keys must be 1-{LIMITS['metadata_key']} characters")
            break
        if len(value) > LIMITS["metadata_value"]:
            v.add(prefix + f"metadata.{key}", f"must be at most {LIMITS['metadata_value']} characters")
    if item.occurred_at is not None and item.occurred_at > now + timedelta(minutes=5):
        v.add(prefix + "occurred_at", "must not be in the future")
    v.raise_if_any()


def build_exception(tenant_id: str, item: NewException, now: datetime) -> ReconException:
    """A validated, classified, OPEN exception."""
    try:
        amount = Decimal(item.amount) if item.amount is not None else None
    except InvalidOperation as exc:  # validate_new_exception normally catches this first
        raise InvalidArgument.field("amount", "must be a decimal string") from exc
    occurred_at = item.occurred_at or now
    severity = item.severity or classify_severity(amount, now - occurred_at)
    return ReconException(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        transaction_id=item.transaction_id,
        severity=severity,
        status=Status.OPEN,
        created_at=now,
        updated_at=now,
        occurred_at=occurred_at,
        reason=item.reason,
        amount=amount,
        currency=item.currency,
        source=item.source,
        due_at=item.due_at,
        metadata=dict(item.metadata),
        due_at_explicit=item.due_at is not None,
    )


def format_amount(amount: Decimal) -> str:
    """At least two decimals ("1250.00"), more only when they carry value ("0.1234")."""
    two = amount.quantize(Decimal("0.01"))
    return f"{two:f}" if two == amount else f"{amount.normalize():f}"


def parse_uuid(value: str, field_name: str) -> str:
    """Canonical lower-case UUID string, or a 400 naming the field."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument.field(field_name, "must be a UUID") from None
