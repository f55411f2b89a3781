"""/v1/bulk inside a transaction (what a batch with an idempotency key runs in): each sub-request in a
SAVEPOINT, on real SQLite and PostgreSQL, with the real interceptor chain and real services."""

import json
import uuid

import grpc
from google.protobuf import json_format
from reconrouter.bulk.v1 import bulk_pb2

from server.bulk.isolation import savepoint_per_request
from server.bulk.runner import BulkLimits, BulkRunner, OuterCall
from server.contract.routes import RouteTable
from server.domain.auth import SCOPES
from server.domain.errors import FailedPrecondition
from server.domain.exceptions import NewException
from server.rpc import call_state
from server.rpc.handlers import HandlerCollector, InProcessHandlers, intercepted
from server.rpc.server import add_servicers
from server.services.exceptions import ListRequest

SERVICE = "/reconrouter.exceptions.v1.ExceptionsService/"


def runner_with_a_half_done_resolve(app) -> BulkRunner:
    """The real handlers, except BulkResolveExceptions: it writes an exception, then refuses (422)."""

    def write_then_fail(request, context):
        app.exceptions.create(call_state.principal(), NewException(transaction_id="half-done"))
        raise FailedPrecondition("refused after writing", reason="INVALID_STATE")

    interceptors = app.interceptors()
    collector = HandlerCollector()
    add_servicers(app.servicers(), collector)
    behaviours = {
        m: intercepted(collector.find(m), interceptors, m).unary_unary
        for m in app.methods
        if collector.find(m)
    }
    fake = grpc.unary_unary_rpc_method_handler(write_then_fail)
    name = SERVICE + "BulkResolveExceptions"
    behaviours[name] = intercepted(fake, interceptors, name).unary_unary
    runner = BulkRunner(RouteTable(app.methods), BulkLimits(), savepoint_per_request(app.uow))
    runner.bind(InProcessHandlers(behaviours))
    return runner


def batch(*requests) -> bulk_pb2.BatchRequest:
    return json_format.ParseDict({"requests": list(requests)}, bulk_pb2.BatchRequest())


def create(txn, request_id=""):
    item = {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": txn})}
    return {**item, "id": request_id} if request_id else item


def stored(app, principal) -> list[str]:
    page = app.exceptions.list(principal, ListRequest(sort_order="asc", limit=200))
    return [e.transaction_id for e in page.items]


def test_a_failing_sub_request_rolls_back_only_its_own_writes(app):
    principal = app.tokens.authenticate(app.tokens.create(f"tx-{uuid.uuid4().hex[:8]}", list(SCOPES))[1])
    half_done = {"url": "/v1/exceptions/bulk/resolve", "method": "POST", "data": {"resolution": "x"}}
    runner = runner_with_a_half_done_resolve(app)
    with app.uow.outer(write=True):  # the batch's transaction, as the idempotency interceptor opens it
        results = runner.run(
            batch(create("kept-1", "a"), half_done, {"url": "/v1/exceptions/@{a.id}"}, create("kept-2")),
            OuterCall(principal, "tx-batch", None),
        )
        # Later sub-requests see earlier writes before anything is committed.
        assert [r.status for r in results] == [200, 422, 200, 200]
        assert results[2].contents["transaction_id"] == "kept-1"
    assert stored(app, principal) == ["kept-1", "kept-2"]


def test_without_a_batch_transaction_each_sub_request_commits_like_a_direct_call(app):
    principal = app.tokens.authenticate(app.tokens.create(f"tx-{uuid.uuid4().hex[:8]}", list(SCOPES))[1])
    half_done = {"url": "/v1/exceptions/bulk/resolve", "method": "POST", "data": {"resolution": "x"}}
    results = runner_with_a_half_done_resolve(app).run(
        batch(create("first"), half_done), OuterCall(principal, "no-tx", None)
    )
    assert [r.status for r in results] == [200, 422]
    # The handler's own unit of work committed before it failed, exactly as a direct call would.
    assert stored(app, principal) == ["first", "half-done"]
