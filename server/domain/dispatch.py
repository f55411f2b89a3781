"""Dispatching an exception to an external system: target names, keys, tickets and the outcomes of
one attempt (the deliveries that carry dispatches out are server/domain/delivery.py)."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from server.domain.errors import DomainError, FailedPrecondition, TargetUnavailable, Violations
from server.domain.exceptions import ReconException

MAX_NAME = 255


class TargetSystem(enum.StrEnum):
    JIRA = "JIRA"
    SERVICENOW = "SERVICENOW"
    WEBHOOK = "WEBHOOK"
    MANUAL = "MANUAL"


def parse_target_system(target_system: str) -> TargetSystem:
    try:
        return TargetSystem(target_system.strip().upper())
    except ValueError:
        raise FailedPrecondition(
            f"unsupported target system {target_system.strip()[:40]!r}; "
            f"use one of {', '.join(t.value for t in TargetSystem)}",
            reason="UNSUPPORTED_TARGET_SYSTEM",
        ) from None


def parse_target_request(target_system: str, queue: str) -> tuple[TargetSystem, str]:
    """Validates the shared `target_system` / `queue` fields of single and bulk dispatch."""
    v = Violations()
    if not target_system.strip():
        v.add("target_system", "is required")
    elif len(target_system) > MAX_NAME:
        v.add("target_system", f"must be at most {MAX_NAME} characters")
    if len(queue) > MAX_NAME:
        v.add("queue", f"must be at most {MAX_NAME} characters")
    v.raise_if_any()
    return parse_target_system(target_system), queue.strip()


def dispatch_key(target: TargetSystem, exception_id: str, queue: str) -> str:
    """Deterministic, so a retried dispatch finds the first one instead of creating a second ticket."""
    key = f"dispatch:{target.value}:{exception_id}"
    return f"{key}:{queue}" if queue else key


_PLAIN_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def external_marker(target: TargetSystem, exception_id: str, queue: str) -> str:
    """The dispatch key as the target stores it: a JIRA label, a ServiceNow correlation_id, a webhook
    X-Idempotency-Key. Those allow no spaces (labels), at most 100 characters (correlation_id) and
    no commas (ServiceNow's IN queries), so a queue outside [A-Za-z0-9_.-]{1,40} is replaced by a
    hash of it; the marker stays deterministic, which is all that finding a ticket again needs."""
    base = f"dispatch:{target.value}:{exception_id}"
    if not queue:
        return base
    if _PLAIN_QUEUE.fullmatch(queue):
        return f"{base}:{queue}"
    return f"{base}:~{hashlib.sha256(queue.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class TicketRef:
    """What a target system answered for one created (or found) ticket."""

    external_reference: str
    acknowledged: bool
    # The HTTP status of the answer, for the attempt log (None when nothing was called: MANUAL).
    http_status: int | None = None


@dataclass(frozen=True)
class TicketRequest:
    """One ticket to create. `check_existing`: an earlier attempt may have created it (a crash or an
    unanswered call), so the connector first asks the target for a ticket carrying `marker`.
    `delivery_id` is the same on every attempt of one delivery (webhook receivers de-duplicate by it)."""

    exception: ReconException
    queue: str
    key: str
    marker: str
    check_existing: bool = False
    delivery_id: str = ""


@dataclass(frozen=True)
class ResolutionRequest:
    """Push a resolved exception to its ticket (API.md §9): a JIRA comment (and transition), the
    ServiceNow record's state and close notes, a webhook `exception.resolved`. `marker` names this
    resolution on the target (a JIRA comment carries it), so that after an unknown outcome
    (`check_existing`) the connector looks before doing it again."""

    exception: ReconException
    ticket: str
    queue: str
    marker: str
    delivery_id: str
    check_existing: bool = False


def apply_ticket(
    exception: ReconException, target: TargetSystem, reference: str, now: datetime
) -> ReconException:
    """Records where the ticket lives. Not mark_dispatched: the ticket exists even when the exception
    was resolved while the call ran, and the record must say so."""
    return replace(exception, external_system=target.value, external_issue_id=reference, updated_at=now)


# -- outcomes of a call, as errors with stable reasons -------------------------------------------


class TargetRejected(FailedPrecondition):
    """The target answered and refused (4xx other than 408, 409, 425, 429): retrying the same
    request cannot help."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message, reason="TARGET_REJECTED")
        self.http_status = http_status


class TargetDown(TargetUnavailable):
    """The target did not answer usefully. maybe_created: a request reached it and its answer was
    lost (timeout, dropped connection, 5xx), so the ticket may exist. timed_out: the attempt's
    deadline (or a socket timeout) ended it. retry_after: seconds the target asked to wait."""

    def __init__(
        self,
        message: str,
        *,
        maybe_created: bool,
        timed_out: bool = False,
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.maybe_created = maybe_created
        self.timed_out = timed_out
        self.retry_after = retry_after
        self.http_status = http_status


class TargetAddressRefused(FailedPrecondition):
    """The target's address is not public (SSRF guard); nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="TARGET_ADDRESS_NOT_ALLOWED")


# -- ports ---------------------------------------------------------------------------------------


class Connector(Protocol):
    """Creates tickets in one external system. Never touches the database."""

    target: TargetSystem
    # True when create calls leave this process (so they go through the delivery workers).
    external: bool
    # How many requests one send() may carry (JIRA bulk create: 50; others 1).
    batch_size: int

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        """Creates (or, for check_existing requests, first looks up) the batch's tickets; one result per
        request, in order: one attempt (the delivery workers retry; the attempt's deadline and the circuit
        breaker live behind this call)."""
        ...

    def resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        """Pushes a resolution to its ticket: one attempt, the ticket's reference back when done."""
        ...
