"""Durable delivery (API.md §7): a dispatch records its intent as a Delivery; workers carry it out.

A Delivery is one (exception, target system, queue): its key is the dispatch key, so dispatching the
same triple again joins the delivery that exists instead of creating a second ticket. Its state is
the one source of truth for "in progress": a request that crashed, a keyed retry of it and the
workers all read it.

    PENDING --claim--> IN_FLIGHT --delivered--> DELIVERED
       ^                   |--refused (4xx)--> FAILED
       |                   |--past the horizon--> FAILED
       +---retry due-------+  (retryable: 429, 5xx, network, timeout)
    PENDING --cancel--> CANCELLED;  FAILED / CANCELLED --retry--> PENDING
"""

from __future__ import annotations

import enum
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from server.domain.dispatch import TargetSystem, TicketRef, apply_ticket
from server.domain.errors import DomainError, FailedPrecondition
from server.domain.exceptions import ReconException
from server.domain.history import Action, HistoryEntry

MAX_REFERENCE = 255
MAX_ERROR = 1000


class DeliveryState(enum.StrEnum):
    PENDING = "PENDING"
    IN_FLIGHT = "IN_FLIGHT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class AttemptOutcome(enum.StrEnum):
    DELIVERED = "DELIVERED"
    RETRYABLE_ERROR = "RETRYABLE_ERROR"
    PERMANENT_ERROR = "PERMANENT_ERROR"
    TIMEOUT = "TIMEOUT"


# HTTP statuses a target may answer to a request it will accept later (everything else 4xx is final).
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_4XX


@dataclass(frozen=True)
class Attempt:
    number: int
    started_at: datetime
    duration_ms: int
    outcome: AttemptOutcome
    http_status: int | None = None
    error: str = ""


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant_id: str
    key: str  # the dispatch key: dispatch:{TARGET}:{exception_id}[:{queue}]
    exception_id: str
    target_system: TargetSystem
    queue: str
    state: DeliveryState
    created_at: datetime
    updated_at: datetime
    # Who asked for it (token id): the DISPATCH history entry written on success names them.
    actor_id: str
    attempt_count: int = 0
    next_attempt_at: datetime | None = None
    # When retrying stops (first attempt of this round + DELIVERY_RETRY_HORIZON).
    horizon_at: datetime | None = None
    # An attempt may have created the ticket without our learning its answer (a timeout, a crash):
    # the next attempt asks the target for it before creating one.
    outcome_unknown: bool = False
    last_error: str = ""
    # A stable reason for the last failure (TARGET_REJECTED, TARGET_UNAVAILABLE, ...).
    last_reason: str = ""
    external_reference: str | None = None
    acknowledged: bool = False
    delivered_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def due_now(
        cls,
        tenant_id: str,
        key: str,
        exception_id: str,
        target: TargetSystem,
        queue: str,
        actor_id: str,
        now: datetime,
        external_reference: str | None = None,
    ) -> Delivery:
        """A new delivery, PENDING and due at once (a dispatch's, or a resolution's)."""
        return cls(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            key=key,
            exception_id=exception_id,
            target_system=target,
            queue=queue,
            state=DeliveryState.PENDING,
            created_at=now,
            updated_at=now,
            actor_id=actor_id,
            next_attempt_at=now,
            external_reference=external_reference,
        )

    @property
    def is_resolution(self) -> bool:
        """Pushes a resolution to the ticket (API.md §9) instead of creating one."""
        return self.key.startswith(RESOLVE_PREFIX)

    @property
    def kind(self) -> str:
        """What it carries, for metrics: `resolution` (a resolution pushed to a ticket), `escalation`
        (a ticket the SLA escalation scheduler asked for) or `dispatch` (a ticket a call asked for)."""
        if self.is_resolution:
            return "resolution"
        return "escalation" if self.actor_id == ESCALATION_ACTOR else "dispatch"

    @property
    def finished(self) -> bool:
        return self.state in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.CANCELLED)

    @property
    def has_first_outcome(self) -> bool:
        """What a dispatch call waits for: delivered, refused, or its first attempt answered and a
        retry scheduled."""
        return self.has_outcome_after(0)

    def has_outcome_after(self, attempts: int) -> bool:
        """Finished, or retrying after more than `attempts` attempts (a revived delivery's waiter
        counts from the attempts of its earlier rounds)."""
        return self.finished or (self.state is DeliveryState.PENDING and self.attempt_count > attempts)

    def delivered(self, ticket: TicketRef, now: datetime) -> Delivery:
        """The ticket exists: DELIVERED with its (cleaned) reference; retry state and lease cleared."""
        return replace(
            self,
            state=DeliveryState.DELIVERED,
            next_attempt_at=None,
            external_reference=clean_text(ticket.external_reference, MAX_REFERENCE),
            acknowledged=ticket.acknowledged,
            delivered_at=now,
            outcome_unknown=False,
            last_error="",
            last_reason="",
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )

    def retried(self, now: datetime) -> Delivery:
        """A FAILED or CANCELLED delivery made due again (a new round of retries)."""
        if self.state not in (DeliveryState.FAILED, DeliveryState.CANCELLED):
            raise FailedPrecondition(
                f"only a FAILED or CANCELLED delivery can be retried; this one is {self.state.value}",
                reason="INVALID_STATE",
            )
        return replace(
            self,
            state=DeliveryState.PENDING,
            next_attempt_at=now,
            horizon_at=None,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )

    def cancelled(self, now: datetime) -> Delivery:
        if self.state is not DeliveryState.PENDING:
            raise FailedPrecondition(
                f"only a PENDING delivery can be cancelled; this one is {self.state.value}",
                reason="INVALID_STATE",
            )
        return replace(self, state=DeliveryState.CANCELLED, next_attempt_at=None, updated_at=now)


def ticket_recorded(exception: ReconException, delivery: Delivery) -> tuple[ReconException, HistoryEntry]:
    """A DELIVERED delivery's ticket on its exception, and the DISPATCH history entry naming who
    dispatched it: the same whether MANUAL made it in the request or a worker delivered it later."""
    now = delivery.delivered_at or delivery.updated_at
    reference = delivery.external_reference or ""
    changes = {
        "target_system": delivery.target_system.value,
        "queue": delivery.queue,
        "external_reference": reference,
        "delivery_id": delivery.id,
    }
    entry = HistoryEntry.record(
        delivery.tenant_id, exception.id, Action.DISPATCH, delivery.actor_id, now, changes
    )
    return apply_ticket(exception, delivery.target_system, reference, now), entry


RESOLVE_PREFIX = "resolve:"
# The actor of escalations in history and deliveries (no token made them; API.md §8).
ESCALATION_ACTOR = "sla-escalation"
# Where a resolution is pushed back (MANUAL has no ticket to update).
RESOLUTION_TARGETS = frozenset({TargetSystem.JIRA, TargetSystem.SERVICENOW, TargetSystem.WEBHOOK})


def resolution_key(target: TargetSystem, exception_id: str, queue: str) -> str:
    """One resolution delivery per ticket: resolved is final, so it is pushed once."""
    key = f"{RESOLVE_PREFIX}{target.value}:{exception_id}"
    return f"{key}:{queue}" if queue else key


def resolution_deliveries(
    exception: ReconException,
    deliveries: Iterable[Delivery],
    origin: str | None,
    actor_id: str,
    now: datetime,
) -> list[Delivery]:
    """A resolved exception's resolution, as deliveries to every ticket it was delivered to (JIRA,
    ServiceNow, webhooks), recorded in the resolve's own transaction and carried out by the delivery
    workers (API.md §9). `origin`: the system the resolution came from, which is not told again
    (no echo). Each carries the ticket's reference, which the attempt updates."""
    made: list[Delivery] = []
    for d in deliveries:
        if (
            d.exception_id != exception.id
            or d.is_resolution
            or d.state is not DeliveryState.DELIVERED
            or d.target_system not in RESOLUTION_TARGETS
            or d.target_system.value == (origin or "").upper()
            or not d.external_reference
        ):
            continue
        made.append(
            Delivery.due_now(
                exception.tenant_id,
                resolution_key(d.target_system, exception.id, d.queue),
                exception.id,
                d.target_system,
                d.queue,
                actor_id,
                now,
                external_reference=d.external_reference,
            )
        )
    return made


class DeliveryScheduled(DomainError):
    """A per-item answer of a dispatch call: the delivery is being retried (API.md §7)."""

    def __init__(self, delivery: Delivery) -> None:
        when = delivery.next_attempt_at
        detail = f"; next attempt at {when.isoformat()}" if when is not None else ""
        reason = f" ({delivery.last_error})" if delivery.last_error else ""
        super().__init__(
            f"delivery to {delivery.target_system.value} is scheduled{detail}{reason}",
            reason="DELIVERY_SCHEDULED",
        )
        self.delivery = delivery


class DeliveryFailed(FailedPrecondition):
    """A per-item answer (or a single dispatch's error): the delivery ended without a ticket."""

    def __init__(self, delivery: Delivery) -> None:
        if delivery.state is DeliveryState.CANCELLED:
            message, reason = "the delivery was cancelled", "DELIVERY_CANCELLED"
        else:
            message = delivery.last_error or f"delivery to {delivery.target_system.value} failed"
            reason = delivery.last_reason or "DELIVERY_FAILED"
        super().__init__(message, reason=reason)
        self.delivery = delivery


def clean_text(text: str, limit: int) -> str:
    """What a target answered, fit to store and show: control characters (NUL included) become
    spaces, runs of white space fold, and the length is capped."""
    # Only a bounded prefix is read (an answer may be megabytes), generous enough that leading
    # white space or control characters cannot leave nothing to show.
    cleaned = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text[: limit * 64])
    folded = " ".join(cleaned.split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
