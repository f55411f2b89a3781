"""BulkService over real gRPC (pytest-grpc's threaded server, the real interceptor chain, real SQL):
the typed Batch RPC and the REST binding's BatchJson, each sub-request against the same call made
directly over gRPC."""

import json
import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from reconrouter.bulk.v1 import bulk_pb2, bulk_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.auth import SCOPES


@pytest.fixture(scope="module")
def bulk(grpc_channel):
    return bulk_pb2_grpc.BulkServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def tenant(app):
    """tenant() -> metadata for a fresh tenant with every scope (its rows are only this test's)."""

    def make(scopes=SCOPES):
        return [
            ("authorization", f"Bearer {app.tokens.create(f't-{uuid.uuid4().hex[:8]}', list(scopes))[1]}")
        ]

    return make


def batch(*requests, **fields) -> bulk_pb2.BatchRequest:
    return json_format.ParseDict({"requests": list(requests), **fields}, bulk_pb2.BatchRequest())


def create(txn="txn", request_id=None, **extra):
    item = {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": txn}), **extra}
    return {**item, "id": request_id} if request_id else item


def details(status: status_pb2.Status) -> dict[str, object]:
    """Status details by type, with the per-call request id left out."""
    found = {}
    for packed in status.details:
        name = packed.type_url.rsplit("/", 1)[-1]
        if name == "google.rpc.RequestInfo":
            continue
        found[name] = packed
    return found


def direct_error(call, request, metadata) -> tuple[grpc.StatusCode, status_pb2.Status, dict]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, metadata=metadata)
    trailers = dict(raised.value.trailing_metadata())
    return raised.value.code(), status_pb2.Status.FromString(trailers["grpc-status-details-bin"]), trailers


def test_sequential_sub_requests_with_references_over_the_typed_rpc(bulk, stub, tenant):
    me = tenant()
    reply, call = bulk.Batch.with_call(
        batch(
            create("t-1", "c"),
            {"url": "/v1/exceptions/@{c.id}"},
            {"url": "/v1/exceptions/@{c.id}/dispatch", "method": "POST", "data": {"target_system": "MANUAL"}},
            {"url": "/v1/exceptions/@{c.id}/history"},
            {"url": "/v1/exceptions?status=OPEN&limit=5"},
        ),
        metadata=[*me, ("x-request-id", "batch-1")],
    )
    assert dict(call.initial_metadata())["x-request-id"] == "batch-1"
    statuses = [r.status for r in reply.responses]
    assert statuses == [200, 200, 200, 200, 200], [r.contents for r in reply.responses]
    assert [r.headers["x-request-id"] for r in reply.responses] == [f"batch-1:{i}" for i in range(5)]
    created = pb.ReconciliationException()
    assert reply.responses[0].response.Unpack(created) and reply.responses[0].id == "c"
    fetched = pb.ReconciliationException()
    reply.responses[1].response.Unpack(fetched)
    assert fetched == created
    # The dispatch (a write) is stored: a direct call sees it.
    direct = stub.GetException(pb.GetExceptionRequest(exception_id=created.id), metadata=me)
    assert direct.external_system == "MANUAL"
    assert json_format.MessageToDict(reply.responses[1].contents)["id"] == created.id
    history = json_format.MessageToDict(reply.responses[3].contents)["items"]
    assert [h["action"] for h in history] == ["CREATE", "DISPATCH"]
    listed = json_format.MessageToDict(reply.responses[4].contents)["items"]
    assert [e["id"] for e in listed] == [created.id]


def test_the_rest_binding_answers_the_same_array_as_json(bulk, tenant):
    me = tenant()
    request = batch(create("t-json", "c"), {"url": "/v1/exceptions/@{c.id}"}, {"url": "/v1/exceptions/nope"})
    body = bulk.BatchJson(request, metadata=me)
    assert body.content_type == "application/json"
    array = json.loads(body.data)
    assert [e["status"] for e in array] == [200, 200, 400]
    assert array[0]["id"] == "c" and "id" not in array[1]
    assert array[1]["contents"] == array[0]["contents"]
    assert set(array[2]) == {"contents", "headers", "status"}


@pytest.mark.parametrize(
    ("role", "url", "method", "data", "rpc", "message"),
    [
        (
            "reader",
            "/v1/exceptions/nope",
            "GET",
            None,
            "GetException",
            pb.GetExceptionRequest(exception_id="nope"),
        ),
        (
            "reader",
            f"/v1/exceptions/{uuid.UUID(int=7)}",
            "GET",
            None,
            "GetException",
            pb.GetExceptionRequest(exception_id=str(uuid.UUID(int=7))),
        ),
        (
            "reader",
            "/v1/exceptions",
            "POST",
            {"transaction_id": "x"},
            "CreateException",
            pb.CreateExceptionRequest(transaction_id="x"),
        ),
        (
            "dispatcher",
            "/v1/exceptions/bulk/dispatch",
            "POST",
            {"exception_ids": [str(uuid.UUID(int=7))], "target_system": "PIGEON"},
            "BulkDispatchExceptions",
            pb.BulkDispatchExceptionsRequest(exception_ids=[str(uuid.UUID(int=7))], target_system="PIGEON"),
        ),
        (
            "writer",
            "/v1/exceptions?limit=500",
            "GET",
            None,
            "ListExceptions",
            pb.ListExceptionsRequest(limit=500),
        ),
    ],
    ids=["400", "404", "403", "422", "400-limit"],
)
def test_a_failing_sub_request_ends_like_the_direct_call(
    bulk, stub, auth, role, url, method, data, rpc, message
):
    code, status, trailers = direct_error(getattr(stub, rpc), message, auth(role))
    item = {"url": url, "method": method, **({"data": data} if data else {})}
    (result,) = bulk.Batch(batch(item), metadata=auth(role)).responses
    assert result.WhichOneof("result") == "error"
    assert (result.error.code, result.error.message) == (status.code, status.message)
    assert details(result.error) == details(status)
    assert result.status == int(trailers["x-http-status"])
    assert code.value[0] == result.error.code
    contents = json_format.MessageToDict(result.contents)
    assert contents["code"] == status.code and contents["message"] == status.message


def test_the_outer_caller_is_inherited_and_cannot_be_replaced(bulk, stub, auth, tenant, app):
    me = tenant()
    intruder_token = app.tokens.create("tenant-intruder", list(SCOPES))[1]
    reply = bulk.Batch(
        batch(create("mine", "c", headers={"Authorization": f"Bearer {intruder_token}"})), metadata=me
    )
    created = pb.ReconciliationException()
    reply.responses[0].response.Unpack(created)
    # Stored under the outer caller's tenant, not the header's.
    assert stub.GetException(pb.GetExceptionRequest(exception_id=created.id), metadata=me).id == created.id
    with pytest.raises(grpc.RpcError) as other:
        stub.GetException(
            pb.GetExceptionRequest(exception_id=created.id),
            metadata=[("authorization", f"Bearer {intruder_token}")],
        )
    assert other.value.code() is grpc.StatusCode.NOT_FOUND
    # A reader's batch cannot write, whatever it carries.
    (denied,) = bulk.Batch(
        batch(create("x", headers={"Authorization": f"Bearer {intruder_token}"})), metadata=auth("reader")
    ).responses
    assert denied.status == 403


@pytest.mark.parametrize("metadata", [[], [("authorization", "Bearer nope")]])
def test_the_outer_call_needs_a_valid_token_but_no_scope(bulk, tenant, metadata):
    with pytest.raises(grpc.RpcError) as raised:
        bulk.Batch(batch({"url": "/v1/exceptions"}), metadata=metadata)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    (only_scope_missing,) = bulk.Batch(
        batch({"url": "/v1/exceptions"}), metadata=tenant(["exceptions:write"])
    ).responses
    assert only_scope_missing.status == 403


def test_an_invalid_envelope_runs_nothing(bulk, stub, tenant):
    me = tenant()
    request = batch(create("should-not-exist"), {"url": "/v1/nothing"}, {"url": "/v1/bulk", "method": "POST"})
    with pytest.raises(grpc.RpcError) as raised:
        bulk.Batch(request, metadata=me)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = status_pb2.Status.FromString(dict(raised.value.trailing_metadata())["grpc-status-details-bin"])
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["requests[1].url", "requests[2].url"]
    assert list(stub.ListExceptions(pb.ListExceptionsRequest(), metadata=me).items) == []


def test_halt_on_error_and_failed_dependencies(bulk, stub, tenant):
    me = tenant()
    reply = bulk.Batch(
        batch(
            {"id": "missing", "url": f"/v1/exceptions/{uuid.UUID(int=9)}"},
            {"url": "/v1/exceptions/@{missing.id}/history"},
            create("after-a-failure"),
        ),
        metadata=me,
    )
    assert [r.status for r in reply.responses] == [404, 424, 200]
    halted = bulk.Batch(
        batch({"url": "/v1/exceptions/nope"}, create("never"), halt_on_error=True), metadata=me
    )
    assert [r.status for r in halted.responses] == [400, 424]
    assert [e.transaction_id for e in stub.ListExceptions(pb.ListExceptionsRequest(), metadata=me).items] == [
        "after-a-failure"
    ]


def test_a_sub_request_with_its_own_idempotency_key_replays(bulk, tenant):
    me = tenant()
    request = batch(create("idem", headers={"Idempotency-Key": "sub-key-1"}))
    first = bulk.Batch(request, metadata=me).responses[0]
    second = bulk.Batch(request, metadata=me).responses[0]
    assert (first.status, second.status) == (200, 200)
    assert first.headers["x-idempotency-replayed"] == "false"
    assert second.headers["x-idempotency-replayed"] == "true"
    assert second.contents == first.contents
    reused = bulk.Batch(batch(create("other", headers={"Idempotency-Key": "sub-key-1"})), metadata=me)
    assert reused.responses[0].status == 422


def test_the_outer_idempotency_key_replays_the_whole_batch(bulk, stub, tenant):
    me = tenant()
    request = batch(create("outer-1"), {"url": "/v1/exceptions/nope"}, create("outer-2"))
    first, call = bulk.Batch.with_call(request, metadata=[*me, ("idempotency-key", "batch-key-1")])
    second, replay = bulk.Batch.with_call(request, metadata=[*me, ("idempotency-key", "batch-key-1")])
    assert dict(call.initial_metadata())["x-idempotency-replayed"] == "false"
    assert dict(replay.initial_metadata())["x-idempotency-replayed"] == "true"
    assert second == first
    # The failing sub-request did not undo its siblings (each runs in a savepoint of the batch's
    # transaction), and the replay created nothing.
    listed = stub.ListExceptions(pb.ListExceptionsRequest(sort_order="asc"), metadata=me).items
    assert [e.transaction_id for e in listed] == ["outer-1", "outer-2"]
