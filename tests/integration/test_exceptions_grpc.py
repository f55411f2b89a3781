"""ExceptionsService over real gRPC (pytest-grpc's threaded server) with the real interceptor chain
and real storage (SQLite always, PostgreSQL when TEST_DATABASE_URL is set)."""

import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from reconrouter.deliveries.v1 import deliveries_pb2 as dpb
from reconrouter.deliveries.v1 import deliveries_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.targets.v1 import targets_pb2, targets_pb2_grpc

from server.domain.auth import SCOPES
from tests.support.standins import Respond, WebhookReceiver


def error_reason(err: grpc.RpcError) -> str:
    trailers = dict(err.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    next(d for d in status.details if d.Is(info.DESCRIPTOR)).Unpack(info)
    return info.reason


def call_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kwargs)
    return err.value


def test_create_then_get_round_trips_and_classifies(stub, auth):
    created, call = stub.CreateException.with_call(
        pb.CreateExceptionRequest(
            transaction_id="txn-1", amount="15000.00", currency="USD", metadata={"k": "v"}
        ),
        metadata=[*auth("writer"), ("x-request-id", "rid-42")],
    )
    assert dict(call.initial_metadata())["x-request-id"] == "rid-42"
    assert created.severity == pb.HIGH and created.status == pb.OPEN
    fetched = stub.GetException(pb.GetExceptionRequest(exception_id=created.id), metadata=auth("reader"))
    assert fetched == created


def test_other_tenants_rows_are_not_found(stub, auth, make_exception):
    mine = make_exception()
    err = call_error(stub.GetException, pb.GetExceptionRequest(exception_id=mine.id), metadata=auth("other"))
    assert err.code() is grpc.StatusCode.NOT_FOUND and error_reason(err) == "NOT_FOUND"
    result = stub.BulkAssignExceptions(
        pb.BulkAssignExceptionsRequest(exception_ids=[mine.id], assignee="mallory"), metadata=auth("other")
    )
    assert [f.error for f in result.failed] == ["exception not found"]
    listed = stub.ListExceptions(pb.ListExceptionsRequest(limit=200), metadata=auth("other"))
    assert mine.id not in {e.id for e in listed.items}


def test_missing_scope_is_permission_denied(stub, auth):
    err = call_error(
        stub.CreateException, pb.CreateExceptionRequest(transaction_id="x"), metadata=auth("reader")
    )
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED


def test_bad_input_is_invalid_argument_with_field(stub, auth):
    err = call_error(stub.GetException, pb.GetExceptionRequest(exception_id="nope"), metadata=auth("reader"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.trailing_metadata())["x-http-status"] == "400"


def violated_fields(err: grpc.RpcError) -> list[str]:
    status = status_pb2.Status.FromString(dict(err.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    return [v.field for v in bad.field_violations]


@pytest.mark.parametrize(
    ("method", "request_message", "field"),
    [
        ("CreateException", pb.CreateExceptionRequest(transaction_id="t", severity=99), "severity"),
        ("ListExceptions", pb.ListExceptionsRequest(status=42), "status"),
        (
            "BatchCreateExceptions",
            pb.BatchCreateExceptionsRequest(
                exceptions=[pb.CreateExceptionRequest(transaction_id="t")] * 3
                + [pb.CreateExceptionRequest(transaction_id="t", severity=-1)]
            ),
            "exceptions[3].severity",
        ),
        (
            "CreateException",
            pb.CreateExceptionRequest(transaction_id="t", due_at={"seconds": 253_402_300_800}),
            "due_at",
        ),
        (
            "CreateException",
            pb.CreateExceptionRequest(transaction_id="t", occurred_at={"seconds": -62_135_596_801}),
            "occurred_at",
        ),
        (
            "CreateException",
            pb.CreateExceptionRequest(transaction_id="t", due_at={"seconds": 0, "nanos": 1_000_000_000}),
            "due_at",
        ),
        (
            "CreateException",
            pb.CreateExceptionRequest(transaction_id="t", due_at={"seconds": 0, "nanos": -1}),
            "due_at",
        ),
    ],
    ids=["enum", "enum-filter", "nested-enum", "after-9999", "before-0001", "nanos-high", "nanos-negative"],
)
def test_unknown_enum_numbers_and_invalid_timestamps_are_400_naming_the_field(
    stub, auth, method, request_message, field
):
    """Bug found: proto3 enums are open and Timestamps unchecked on the wire; both were a 500."""
    err = call_error(getattr(stub, method), request_message, metadata=auth("writer"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert dict(err.trailing_metadata())["x-http-status"] == "400"
    assert violated_fields(err) == [field]


def test_an_unknown_delivery_state_is_400_naming_the_field(grpc_channel, auth):
    deliveries = deliveries_pb2_grpc.DeliveriesServiceStub(grpc_channel)
    err = call_error(deliveries.ListDeliveries, dpb.ListDeliveriesRequest(state=77), metadata=auth("admin"))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert violated_fields(err) == ["state"]


def test_bulk_assign_mixed_outcomes_keep_order_and_collapse_duplicates(stub, auth, make_exception):
    a, b = make_exception(), make_exception()
    missing = str(uuid.uuid4())
    stub.BulkResolveExceptions(
        pb.BulkResolveExceptionsRequest(exception_ids=[b.id], resolution="done"), metadata=auth("writer")
    )
    result = stub.BulkAssignExceptions(
        pb.BulkAssignExceptionsRequest(exception_ids=[missing, a.id, b.id, a.id], assignee="alice"),
        metadata=auth("writer"),
    )
    assert list(result.succeeded) == [a.id]
    assert [(f.exception_id, f.error) for f in result.failed] == [
        (missing, "exception not found"),
        (b.id, "exception is resolved"),
    ]
    assert result.total == 3
    got = stub.GetException(pb.GetExceptionRequest(exception_id=a.id), metadata=auth("reader"))
    assert (got.status, got.assigned_to) == (pb.ASSIGNED, "alice")


def test_dispatch_manual_is_recorded_once_and_answers_the_same_ticket(stub, auth, make_exception):
    e = make_exception()
    first = stub.DispatchException(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="manual", queue="ops"),
        metadata=auth("dispatcher"),
    )
    again = stub.DispatchException(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="MANUAL", queue="ops"),
        metadata=auth("dispatcher"),
    )
    assert first.acknowledged and first.external_reference.startswith("MANUAL-")
    assert again == first
    got = stub.GetException(pb.GetExceptionRequest(exception_id=e.id), metadata=auth("reader"))
    assert (got.external_system, got.external_issue_id) == ("MANUAL", first.external_reference)
    history = stub.ListExceptionHistory(
        pb.ListExceptionHistoryRequest(exception_id=e.id), metadata=auth("reader")
    )
    assert [h.action for h in history.items] == ["CREATE", "DISPATCH"]


@pytest.mark.parametrize(
    ("target", "queue", "code", "reason"),
    [
        ("JIRA", "", grpc.StatusCode.FAILED_PRECONDITION, "TARGET_NOT_CONFIGURED"),
        ("EMAIL", "", grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED_TARGET_SYSTEM"),
        # Without a target the routing rules choose the queue too (API.md §8).
        ("", "OPS", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ],
)
def test_bulk_dispatch_request_level_refusals(stub, auth, make_exception, target, queue, code, reason):
    e = make_exception()
    err = call_error(
        stub.BulkDispatchExceptions,
        pb.BulkDispatchExceptionsRequest(exception_ids=[e.id], target_system=target, queue=queue),
        metadata=auth("dispatcher"),
    )
    assert (err.code(), error_reason(err)) == (code, reason)


def test_bulk_dispatch_all_items_failing_is_still_a_result(stub, auth):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    result = stub.BulkDispatchExceptions(
        pb.BulkDispatchExceptionsRequest(exception_ids=ids, target_system="MANUAL"),
        metadata=auth("dispatcher"),
    )
    assert list(result.succeeded) == [] and [f.exception_id for f in result.failed] == ids


def test_single_dispatch_of_resolved_is_422_invalid_state(stub, auth, make_exception):
    e = make_exception()
    stub.BulkResolveExceptions(
        pb.BulkResolveExceptionsRequest(exception_ids=[e.id], resolution="done"), metadata=auth("writer")
    )
    err = call_error(
        stub.DispatchException,
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="MANUAL"),
        metadata=auth("dispatcher"),
    )
    assert error_reason(err) == "INVALID_STATE"
    assert dict(err.trailing_metadata())["x-http-status"] == "422"


def test_callback_resolves_a_dispatched_exception(stub, auth, make_exception):
    e = make_exception()
    sent = stub.DispatchException(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="MANUAL"), metadata=auth("dispatcher")
    )
    wrong = call_error(
        stub.ReceiveCallback,
        pb.ReceiveCallbackRequest(
            exception_id=e.id, external_system="MANUAL", external_issue_id="OTHER", status=pb.RESOLVED
        ),
        # Callbacks need an idempotency key (the contract's idempotency_key_required).
        metadata=[*auth("writer"), ("x-idempotency-key", f"cb-wrong-{e.id}")],
    )
    assert error_reason(wrong) == "INVALID_STATE"
    answer = stub.ReceiveCallback(
        pb.ReceiveCallbackRequest(
            exception_id=e.id,
            external_system="manual",
            external_issue_id=sent.external_reference,
            status=pb.RESOLVED,
            resolution_notes="fixed upstream",
        ),
        metadata=[*auth("writer"), ("x-idempotency-key", f"cb-{e.id}")],
    )
    assert answer.status == "accepted"
    got = stub.GetException(pb.GetExceptionRequest(exception_id=e.id), metadata=auth("reader"))
    assert (got.status, got.resolution_notes) == (pb.RESOLVED, "fixed upstream")


def eventually(check, timeout: float = 15.0):
    """Polls check() until it returns something truthy (bounded; the workers run in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def webhook_tenant(app, grpc_channel):
    """A fresh tenant whose WEBHOOK target is a loopback receiver: (metadata, receiver)."""
    token = [("authorization", f"Bearer {app.tokens.create(f'tenant-{uuid.uuid4()}', list(SCOPES))[1]}")]
    with WebhookReceiver() as receiver:
        targets_pb2_grpc.TargetsServiceStub(grpc_channel).PutTarget(
            targets_pb2.PutTargetRequest(target_system="WEBHOOK", url=receiver.url, secret=receiver.secret),
            metadata=token,
        )
        yield token, receiver


def test_a_dispatch_through_grpc_is_delivered_by_the_workers(stub, webhook_tenant, grpc_channel):
    token, receiver = webhook_tenant
    e = stub.CreateException(pb.CreateExceptionRequest(transaction_id="txn-hook"), metadata=token)
    sent, call = stub.DispatchException.with_call(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="WEBHOOK", queue="payments"),
        metadata=token,
    )
    # The healthy receiver's first attempt lands within the call's wait: delivered, 200.
    assert sent.acknowledged and sent.external_reference and sent.delivery_id
    assert "x-http-status" not in dict(call.initial_metadata())
    assert receiver.count("POST", "/") == 1 and receiver.violations == []
    got = stub.GetException(pb.GetExceptionRequest(exception_id=e.id), metadata=token)
    assert (got.external_system, got.external_issue_id) == ("WEBHOOK", sent.external_reference)
    delivery = deliveries_pb2_grpc.DeliveriesServiceStub(grpc_channel).GetDelivery(
        dpb.GetDeliveryRequest(delivery_id=sent.delivery_id), metadata=token
    )
    assert delivery.state == dpb.Delivery.DELIVERED
    assert [a.outcome for a in delivery.attempts] == [dpb.DeliveryAttempt.DELIVERED]


def test_a_failing_target_answers_202_and_the_delivery_keeps_trying(stub, webhook_tenant, grpc_channel):
    token, receiver = webhook_tenant
    # The call waits for the first outcome only: a retryable failure answers at once (202, the
    # delivery scheduled); the workers retry until the receiver recovers.
    receiver.cue(*[Respond(503, {"error": "busy"}) for _ in range(3)])
    e = stub.CreateException(pb.CreateExceptionRequest(transaction_id="txn-busy"), metadata=token)
    deliveries = deliveries_pb2_grpc.DeliveriesServiceStub(grpc_channel)
    sent, call = stub.DispatchException.with_call(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="WEBHOOK"), metadata=token
    )
    assert dict(call.initial_metadata())["x-http-status"] == "202" and not sent.acknowledged
    assert sent.delivery_id and not sent.external_reference and sent.HasField("next_attempt_at")

    def delivered():
        d = deliveries.GetDelivery(dpb.GetDeliveryRequest(delivery_id=sent.delivery_id), metadata=token)
        return d if d.state == dpb.Delivery.DELIVERED else None

    delivery = eventually(delivered)
    assert delivery, "the delivery was not delivered after the target recovered"
    outcomes = [a.outcome for a in delivery.attempts]
    assert outcomes == [dpb.DeliveryAttempt.RETRYABLE_ERROR] * 3 + [dpb.DeliveryAttempt.DELIVERED]
    assert [a.http_status for a in delivery.attempts] == [503, 503, 503, 200]
    assert len(receiver.deliveries) == 1 and receiver.violations == []
    got = stub.GetException(pb.GetExceptionRequest(exception_id=e.id), metadata=token)
    assert got.external_issue_id == delivery.external_reference


def test_a_refusal_is_422_target_rejected_and_not_retried(stub, webhook_tenant):
    token, receiver = webhook_tenant
    receiver.cue(Respond(400, {"error": "unknown queue"}))
    e = stub.CreateException(pb.CreateExceptionRequest(transaction_id="txn-no"), metadata=token)
    err = call_error(
        stub.DispatchException,
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="WEBHOOK"),
        metadata=token,
    )
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION and error_reason(err) == "TARGET_REJECTED"
    assert dict(err.trailing_metadata())["x-http-status"] == "422"
    time.sleep(0.5)  # several worker polls: a permanent refusal is not tried again
    assert receiver.count("POST", "/") == 1
    # Dispatching again means "try again": a new round, whose first outcome the call waits for
    # (here: delivered), not the previous round's refusal.
    again = stub.DispatchException(
        pb.DispatchExceptionRequest(exception_id=e.id, target_system="WEBHOOK"), metadata=token
    )
    assert again.acknowledged and again.external_reference and receiver.count("POST", "/") == 2


def test_batch_create_is_all_or_nothing(stub, auth):
    before = stub.ListExceptions(pb.ListExceptionsRequest(limit=200), metadata=auth("reader"))
    err = call_error(
        stub.BatchCreateExceptions,
        pb.BatchCreateExceptionsRequest(
            exceptions=[
                pb.CreateExceptionRequest(transaction_id="ok"),
                pb.CreateExceptionRequest(transaction_id=""),
            ]
        ),
        metadata=auth("writer"),
    )
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    after = stub.ListExceptions(pb.ListExceptionsRequest(limit=200), metadata=auth("reader"))
    assert [e.id for e in after.items] == [e.id for e in before.items]
    made = stub.BatchCreateExceptions(
        pb.BatchCreateExceptionsRequest(
            exceptions=[pb.CreateExceptionRequest(transaction_id=f"b{i}") for i in range(3)]
        ),
        metadata=auth("writer"),
    )
    assert [e.transaction_id for e in made.exceptions] == ["b0", "b1", "b2"]


def test_list_pages_walk_every_row_once(stub, auth):
    token = auth("pager")
    made = stub.BatchCreateExceptions(
        pb.BatchCreateExceptionsRequest(
            exceptions=[pb.CreateExceptionRequest(transaction_id=f"p{i}") for i in range(25)]
        ),
        metadata=token,
    )
    seen, cursor = [], ""
    while True:
        page = stub.ListExceptions(
            pb.ListExceptionsRequest(limit=7, cursor=cursor, sort_by="id", sort_order="asc"), metadata=token
        )
        seen += [e.id for e in page.items]
        if not page.has_more:
            assert page.next_cursor == ""
            break
        cursor = page.next_cursor
    assert seen == sorted(e.id for e in made.exceptions)
