"""Deliveries: domain -> proto (the deliveries half of converters.py, kept apart)."""

from __future__ import annotations

from reconrouter.deliveries.v1 import deliveries_pb2 as pb

from server.domain.bulk import BulkOutcome
from server.domain.delivery import Attempt, Delivery, DeliveryState
from server.rpc.converters import timestamp
from server.services.deliveries import DeliveryPage


def attempt_to_proto(attempt: Attempt) -> pb.DeliveryAttempt:
    message = pb.DeliveryAttempt(
        number=attempt.number,
        started_at=timestamp(attempt.started_at),
        duration_ms=attempt.duration_ms,
        outcome=attempt.outcome.value,
    )
    if attempt.http_status is not None:
        message.http_status = attempt.http_status
    if attempt.error:
        message.error = attempt.error
    return message


def delivery_to_proto(d: Delivery) -> pb.Delivery:
    message = pb.Delivery(
        id=d.id,
        exception_id=d.exception_id,
        target_system=d.target_system.value,
        queue=d.queue,
        state=d.state.value,
        attempt_count=d.attempt_count,
        created_at=timestamp(d.created_at),
        updated_at=timestamp(d.updated_at),
        attempts=[attempt_to_proto(a) for a in d.attempts],
        kind="RESOLUTION" if d.is_resolution else "DISPATCH",
    )
    if d.state is DeliveryState.PENDING and d.next_attempt_at is not None:
        message.next_attempt_at.CopyFrom(timestamp(d.next_attempt_at))
    if d.delivered_at is not None:
        message.delivered_at.CopyFrom(timestamp(d.delivered_at))
    if d.last_error:
        message.last_error = d.last_error
    if d.last_reason:
        message.last_reason = d.last_reason
    if d.external_reference is not None:
        message.external_reference = d.external_reference
    return message


def state_to_domain(value: int) -> str:
    return "" if value == pb.Delivery.STATE_UNSPECIFIED else pb.Delivery.State.Name(value)


def delivery_page_to_proto(page: DeliveryPage) -> pb.ListDeliveriesResponse:
    return pb.ListDeliveriesResponse(
        items=[delivery_to_proto(d) for d in page.items],
        next_cursor=page.next_cursor,
        limit=page.limit,
        has_more=page.has_more,
    )


def bulk_retry_to_proto(outcome: BulkOutcome) -> pb.BulkDeliveryResult:
    return pb.BulkDeliveryResult(
        succeeded=outcome.succeeded,
        failed=[
            pb.BulkDeliveryFailure(delivery_id=f.exception_id, error=f.error, reason=f.reason)
            for f in outcome.failed
        ],
        total=outcome.total,
    )
