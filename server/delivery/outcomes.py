"""What one attempt's outcome makes of a delivery (API.md §7), as a pure function: DELIVERED with
the (cleaned) ticket; FAILED at once for a refusal; PENDING with the next attempt on the schedule for
a retryable failure, FAILED past the horizon; CANCELLED when the exception was resolved first."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from server.delivery.schedule import RetrySchedule
from server.domain.delivery import (
    MAX_ERROR,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryState,
    clean_text,
)
from server.domain.dispatch import TargetAddressRefused, TargetDown, TicketRef
from server.domain.errors import DomainError


def outcome_of(
    delivery: Delivery,
    outcome: TicketRef | DomainError | None,
    started: datetime,
    seconds: float,
    now: datetime,
    schedule: RetrySchedule,
) -> tuple[Delivery, Attempt]:
    """The delivery after an attempt that began at `started` and took `seconds`, and its log entry.
    `outcome`: the connector's answer, or None when the exception was resolved before the call."""
    number = delivery.attempt_count
    duration_ms = int(seconds * 1000)
    done = replace(delivery, lease_owner=None, lease_expires_at=None, updated_at=now)
    if outcome is None:
        attempt = Attempt(
            number, started, duration_ms, AttemptOutcome.PERMANENT_ERROR, None, "exception resolved"
        )
        cancelled = replace(
            done,
            state=DeliveryState.CANCELLED,
            next_attempt_at=None,
            last_error="the exception was resolved before it was delivered",
            last_reason="INVALID_STATE",
        )
        return cancelled, attempt
    if isinstance(outcome, TicketRef):
        attempt = Attempt(number, started, duration_ms, AttemptOutcome.DELIVERED, outcome.http_status, "")
        return delivery.delivered(outcome, now), attempt
    error = clean_text(outcome.message, MAX_ERROR)
    status = getattr(outcome, "http_status", None)
    if not isinstance(outcome, TargetDown) or isinstance(outcome, TargetAddressRefused):
        attempt = Attempt(number, started, duration_ms, AttemptOutcome.PERMANENT_ERROR, status, error)
        failed = replace(
            done,
            state=DeliveryState.FAILED,
            next_attempt_at=None,
            last_error=error,
            last_reason=outcome.reason,
        )
        return failed, attempt
    kind = AttemptOutcome.TIMEOUT if outcome.timed_out else AttemptOutcome.RETRYABLE_ERROR
    attempt = Attempt(number, started, duration_ms, kind, status, error)
    horizon = delivery.horizon_at or schedule.horizon(started)
    when = schedule.next_attempt(number, now, horizon, outcome.retry_after)
    unknown = delivery.outcome_unknown or outcome.maybe_created
    if when is None:
        failed = replace(
            done,
            state=DeliveryState.FAILED,
            next_attempt_at=None,
            horizon_at=horizon,
            outcome_unknown=unknown,
            last_error=clean_text(f"gave up after {number} attempts: {error}", MAX_ERROR),
            last_reason=outcome.reason,
        )
        return failed, attempt
    retrying = replace(
        done,
        state=DeliveryState.PENDING,
        next_attempt_at=when,
        horizon_at=horizon,
        outcome_unknown=unknown,
        last_error=error,
        last_reason=outcome.reason,
    )
    return retrying, attempt
