"""Shared rules of the bulk operations (seed 000): 1-100 ids, duplicates collapsed, order kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from server.domain.delivery import DeliveryFailed, DeliveryScheduled
from server.domain.errors import DomainError, Violations
from server.domain.exceptions import parse_uuid

MAX_BULK_IDS = 100


def unique_ids(raw_ids: list[str], field_name: str = "exception_ids") -> list[str]:
    """Canonical ids in first-seen order; the count limit applies to the request as sent."""
    v = Violations()
    if not raw_ids:
        v.add(field_name, "must contain at least 1 id")
    elif len(raw_ids) > MAX_BULK_IDS:
        v.add(field_name, f"must contain at most {MAX_BULK_IDS} ids")
    v.raise_if_any()
    seen: dict[str, None] = {}
    for index, raw in enumerate(raw_ids):
        try:
            seen.setdefault(parse_uuid(raw, f"{field_name}[{index}]"), None)
        except DomainError as exc:
            for violation in exc.violations:
                v.add(violation.field, violation.description)
    v.raise_if_any()
    return list(seen)


@dataclass(frozen=True)
class ItemFailure:
    exception_id: str  # the item's id (a delivery id for the delivery routes)
    error: str
    reason: str
    # A dispatch item's delivery, when it has one (DELIVERY_SCHEDULED, or its delivery failed).
    delivery_id: str = ""
    next_attempt_at: datetime | None = None


@dataclass
class BulkOutcome:
    ids: list[str]
    succeeded: list[str] = field(default_factory=list)
    failed: list[ItemFailure] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.ids)

    def fail(self, exception_id: str, error: DomainError) -> None:
        if isinstance(error, DeliveryScheduled):
            delivery = error.delivery
            failure = ItemFailure(
                exception_id, error.message, error.reason, delivery.id, delivery.next_attempt_at
            )
        elif isinstance(error, DeliveryFailed):
            failure = ItemFailure(exception_id, error.message, error.reason, error.delivery.id)
        else:
            failure = ItemFailure(exception_id, error.message, error.reason)
        self.failed.append(failure)

    def in_request_order(self) -> BulkOutcome:
        """Items may finish out of order (concurrent dispatch); results keep the request's order."""
        position = {eid: i for i, eid in enumerate(self.ids)}
        self.succeeded.sort(key=position.__getitem__)
        self.failed.sort(key=lambda f: position[f.exception_id])
        return self
