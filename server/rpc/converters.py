"""The only module that knows both the proto messages and the domain types: pairs of
to_domain (request -> domain input) and to_proto (domain -> response)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import struct_pb2, timestamp_pb2
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.bulk import BulkOutcome, ItemFailure
from server.domain.delivery import Delivery, DeliveryState
from server.domain.exceptions import NewException, ReconException, Severity, Status, format_amount
from server.domain.history import HistoryEntry
from server.services.exceptions import CallbackReport, ListRequest, Page

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    # Timestamp.FromDatetime goes through a time tuple and calendar.timegm: 3x the cost of this
    # exact arithmetic, and a page of 20 exceptions converts about a hundred of them. Aware
    # datetimes only (the domain's are); year 1-9999 is also Timestamp's valid range.
    delta = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def _datetime(message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    return getattr(message, field).ToDatetime(tzinfo=UTC)


def severity_to_domain(value: int) -> Severity | None:
    return None if value == pb.SEVERITY_UNSPECIFIED else Severity[pb.Severity.Name(value)]


def status_to_domain(value: int) -> Status | None:
    return None if value == pb.EXCEPTION_STATUS_UNSPECIFIED else Status[pb.ExceptionStatus.Name(value)]


def new_exception_to_domain(request: pb.CreateExceptionRequest) -> NewException:
    return NewException(
        transaction_id=request.transaction_id,
        severity=severity_to_domain(request.severity),
        reason=request.reason,
        amount=request.amount if request.HasField("amount") else None,
        currency=request.currency if request.HasField("currency") else None,
        source=request.source,
        due_at=_datetime(request, "due_at"),
        metadata=dict(request.metadata),
        occurred_at=_datetime(request, "occurred_at"),
    )


def exception_to_proto(e: ReconException) -> pb.ReconciliationException:
    message = pb.ReconciliationException(
        id=e.id,
        transaction_id=e.transaction_id,
        # By name: the domain's enum names are the proto's value names.
        severity=e.severity.name,
        status=e.status.name,
        reason=e.reason,
        source=e.source,
        metadata=e.metadata,
        created_at=timestamp(e.created_at),
        updated_at=timestamp(e.updated_at),
        occurred_at=timestamp(e.occurred_at),
    )
    if e.amount is not None:
        message.amount = format_amount(e.amount)
    if e.due_at is not None:
        message.due_at.CopyFrom(timestamp(e.due_at))
    for name in ("currency", "assigned_to", "external_system", "external_issue_id"):
        if getattr(e, name) is not None:
            setattr(message, name, getattr(e, name))
    for name in ("resolution_notes", "resolution_reason"):
        if getattr(e, name) is not None:
            setattr(message, name, getattr(e, name))
    return message


def list_request_to_domain(request: pb.ListExceptionsRequest) -> ListRequest:
    return ListRequest(
        status=status_to_domain(request.status),
        severity=severity_to_domain(request.severity),
        assigned_to=request.assigned_to,
        external_system=request.external_system,
        date_from=request.date_from,
        date_to=request.date_to,
        cursor=request.cursor,
        limit=request.limit,
        sort_by=request.sort_by,
        sort_order=request.sort_order,
        overdue=request.overdue,
    )


def exception_page_to_proto(page: Page[ReconException]) -> pb.ListExceptionsResponse:
    return pb.ListExceptionsResponse(
        items=[exception_to_proto(e) for e in page.items],
        next_cursor=page.next_cursor,
        limit=page.limit,
        has_more=page.has_more,
    )


def history_entry_to_proto(entry: HistoryEntry) -> pb.HistoryEntry:
    changes = struct_pb2.Struct()
    changes.update(entry.changes)
    return pb.HistoryEntry(
        id=entry.id,
        action=entry.action.value,
        actor_id=entry.actor_id,
        changes=changes,
        created_at=timestamp(entry.created_at),
    )


def history_page_to_proto(page: Page[HistoryEntry]) -> pb.ListExceptionHistoryResponse:
    return pb.ListExceptionHistoryResponse(
        items=[history_entry_to_proto(h) for h in page.items], next_cursor=page.next_cursor
    )


def dispatch_to_proto(delivery: Delivery) -> pb.DispatchExceptionResponse:
    """Delivered: the ticket. Otherwise (still being retried) the delivery and its next attempt."""
    message = pb.DispatchExceptionResponse(
        exception_id=delivery.exception_id,
        target_system=delivery.target_system.value,
        queue=delivery.queue,
        external_reference=delivery.external_reference or "",
        acknowledged=delivery.acknowledged and delivery.state is DeliveryState.DELIVERED,
        delivery_id=delivery.id,
    )
    if delivery.delivered_at is not None:
        message.dispatched_at.CopyFrom(timestamp(delivery.delivered_at))
    if delivery.state is not DeliveryState.DELIVERED and delivery.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
    return message


def bulk_outcome_to_proto(outcome: BulkOutcome) -> pb.BulkResult:
    return pb.BulkResult(
        succeeded=outcome.succeeded,
        failed=[_item_failure(f) for f in outcome.failed],
        total=outcome.total,
    )


def _item_failure(f: ItemFailure) -> pb.BulkItemFailure:
    message = pb.BulkItemFailure(exception_id=f.exception_id, error=f.error, reason=f.reason)
    if f.delivery_id:
        message.delivery_id = f.delivery_id
    if f.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(timestamp(f.next_attempt_at))
    return message


def callback_to_domain(request: pb.ReceiveCallbackRequest) -> CallbackReport:
    return CallbackReport(
        external_system=request.external_system,
        external_issue_id=request.external_issue_id,
        status=status_to_domain(request.status),
        assignee=request.assignee,
        resolution_notes=request.resolution_notes,
    )
