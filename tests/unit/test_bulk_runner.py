"""The /v1/bulk runner with the real interceptors (request id, errors, auth) around fake handlers:
order, inherited caller, per-item scopes, halting, references, the time budget (a fake clock)."""

import time
from contextlib import nullcontext

import grpc
import pytest
from google.protobuf import json_format
from reconrouter.bulk.v1 import bulk_pb2
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.bulk.runner import BulkLimits, BulkRunner, OuterCall
from server.contract.methods import load_methods
from server.contract.routes import RouteTable
from server.domain.auth import Principal
from server.domain.errors import FailedPrecondition, NotFound
from server.rpc import call_state
from server.rpc.handlers import InProcessHandlers, intercepted
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.errors import ErrorInterceptor
from server.rpc.interceptors.request_id import RequestIdInterceptor

METHODS = load_methods()
SERVICE = "/reconrouter.exceptions.v1.ExceptionsService/"
WRITER = Principal("tenant-a", "token-w", frozenset({"exceptions:read", "exceptions:write"}))
READER = Principal("tenant-a", "token-r", frozenset({"exceptions:read"}))
DISPATCHER = Principal("tenant-a", "token-d", frozenset({"exceptions:read", "exceptions:dispatch"}))


def refuse_tokens(token):
    raise AssertionError(f"a sub-request authenticated a token of its own: {token}")


class FakeExceptions:
    """Handlers that keep exceptions in a dict and record what they saw."""

    def __init__(self):
        self.rows: dict[str, pb.ReconciliationException] = {}
        self.seen: list[tuple[str, str, str]] = []  # (rpc, request id, tenant)

    def _saw(self, rpc):
        state = call_state.current()
        self.seen.append((rpc, state.request_id, call_state.principal().tenant_id))

    def create(self, request, context):
        self._saw("Create")
        row = pb.ReconciliationException(id=f"e{len(self.rows) + 1}", transaction_id=request.transaction_id)
        self.rows[row.id] = row
        call_state.current().response_headers["x-custom"] = "yes"
        return row

    def get(self, request, context):
        self._saw("Get")
        if request.exception_id not in self.rows:
            raise NotFound("exception not found")
        return self.rows[request.exception_id]

    def dispatch(self, request, context):
        self._saw("Dispatch")
        raise FailedPrecondition("exception is resolved", reason="INVALID_STATE")

    def list(self, request, context):
        self._saw("List")
        context.set_code(grpc.StatusCode.UNAVAILABLE)
        context.set_details("set_code without abort")
        return pb.ListExceptionsResponse()


class Clock:
    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def make_runner(fake, *, budget=30.0, clock=time.monotonic, isolation=nullcontext, missing=()):
    interceptors = [
        RequestIdInterceptor(METHODS),
        ErrorInterceptor(lambda exc: None),
        AuthInterceptor(METHODS, refuse_tokens),
    ]
    behaviours = {
        "CreateException": fake.create,
        "GetException": fake.get,
        "DispatchException": fake.dispatch,
        "ListExceptions": fake.list,
    }
    handlers = {}
    for name, behaviour in behaviours.items():
        if name not in missing:
            handler = grpc.unary_unary_rpc_method_handler(behaviour)
            handlers[SERVICE + name] = intercepted(handler, interceptors, SERVICE + name).unary_unary
    runner = BulkRunner(RouteTable(METHODS), BulkLimits(100, budget), isolation, clock)
    runner.bind(InProcessHandlers(handlers))
    return runner


def batch(*requests, **fields):
    return json_format.ParseDict({"requests": list(requests), **fields}, bulk_pb2.BatchRequest())


def run(runner, request, principal=WRITER, request_id="outer"):
    return runner.run(request, OuterCall(principal, request_id, None))


CREATE = {"url": "/v1/exceptions", "method": "POST", "data": '{"transaction_id": "t"}'}


def test_sub_requests_run_in_order_and_see_each_others_effects():
    fake = FakeExceptions()
    results = run(
        make_runner(fake),
        batch({**CREATE, "id": "c"}, {"url": "/v1/exceptions/e1"}, {"url": "/v1/exceptions/e9"}),
    )
    assert [r.status for r in results] == [200, 200, 404]
    assert results[0].id == "c" and results[1].id == ""
    assert results[1].contents["transaction_id"] == "t"
    assert results[2].contents["message"] == "exception not found"
    assert [(rpc, rid) for rpc, rid, _ in fake.seen] == [
        ("Create", "outer:0"),
        ("Get", "outer:1"),
        ("Get", "outer:2"),
    ]


def test_each_sub_request_has_its_own_call_state_and_headers_and_the_outer_state_is_restored():
    fake = FakeExceptions()
    outer_state = call_state.CallState("outer", "/reconrouter.bulk.v1.BulkService/BatchJson", None)
    token = call_state.enter(outer_state)
    try:
        results = run(make_runner(fake), batch(CREATE, {"url": "/v1/exceptions/e1"}))
        assert call_state.current() is outer_state
    finally:
        call_state.leave(token)
    assert results[0].headers == {
        "content-type": "application/json",
        "x-request-id": "outer:0",
        "x-custom": "yes",
    }
    assert results[1].headers == {"content-type": "application/json", "x-request-id": "outer:1"}
    assert outer_state.response_headers == {}


def test_the_outer_caller_is_inherited_and_an_authorization_header_changes_nothing():
    fake = FakeExceptions()
    request = batch({**CREATE, "headers": {"Authorization": "Bearer someone-else"}})
    assert [r.status for r in run(make_runner(fake), request)] == [200]
    assert fake.seen == [("Create", "outer:0", "tenant-a")]


def test_scopes_are_checked_per_sub_request():
    fake = FakeExceptions()
    fake.rows["e1"] = pb.ReconciliationException(id="e1")
    results = run(make_runner(fake), batch(CREATE, {"url": "/v1/exceptions/e1"}), principal=READER)
    assert [r.status for r in results] == [403, 200]
    assert results[0].contents["message"] == "the token lacks the exceptions:write scope"
    assert results[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_errors_carry_the_http_status_of_a_direct_call():
    fake = FakeExceptions()
    results = run(
        make_runner(fake),
        batch(
            {"url": "/v1/exceptions/e1/dispatch", "method": "POST", "data": {"target_system": "MANUAL"}},
            {"url": "/v1/exceptions?limit=abc"},
            {"url": "/v1/exceptions"},
        ),
        principal=DISPATCHER,
    )
    assert [r.status for r in results] == [422, 400, 503]  # x-http-status; Envoy's own 400; grpc's 503
    assert results[0].contents["details"][0]["reason"] == "INVALID_STATE"
    assert results[1].contents["message"] == 'limit: invalid value "abc" for type TYPE_INT32'
    assert results[2].contents == {"code": 14, "message": "set_code without abort", "details": []}


def test_halt_on_error_stops_at_the_first_failure():
    fake = FakeExceptions()
    results = run(make_runner(fake), batch({"url": "/v1/exceptions/e9"}, CREATE, CREATE, halt_on_error=True))
    assert [r.status for r in results] == [404, 424, 424]
    assert results[1].contents["details"][0]["reason"] == "BATCH_HALTED"
    assert fake.rows == {}


def test_without_halt_on_error_the_rest_runs():
    fake = FakeExceptions()
    results = run(make_runner(fake), batch({"url": "/v1/exceptions/e9"}, {**CREATE, "id": "x"}))
    assert [r.status for r in results] == [404, 200]


def test_references_to_failed_or_later_requests_answer_424_without_running():
    fake = FakeExceptions()
    results = run(
        make_runner(fake),
        batch(
            {"url": "/v1/exceptions/@{later.id}"},
            {"id": "missing", "url": "/v1/exceptions/e9"},
            {"url": "/v1/exceptions/@{missing.id}"},
            {**CREATE, "id": "later"},
            {"url": "/v1/exceptions/@{later.id}"},
            {"url": "/v1/exceptions/@{later.nope}"},
        ),
    )
    assert [r.status for r in results] == [424, 404, 424, 200, 200, 400]
    reasons = [r.contents["details"][0]["reason"] for r in results if r.status != 200]
    assert reasons == ["DEPENDENCY_FAILED", "NOT_FOUND", "DEPENDENCY_FAILED", "INVALID_REFERENCE"]
    assert "which has not run yet" in results[0].contents["message"]
    assert "which failed with status 404" in results[2].contents["message"]
    assert [rpc for rpc, _, _ in fake.seen] == ["Get", "Create", "Get"]


def test_a_substituted_path_that_no_longer_routes_is_envoys_404():
    fake = FakeExceptions()
    create = {**CREATE, "id": "c", "data": '{"transaction_id": ""}'}
    results = run(make_runner(fake), batch(create, {"url": "/v1/exceptions/@{c.transaction_id}/history"}))
    # An empty value leaves /v1/exceptions//history, which is /v1/exceptions/history: GetException.
    assert results[1].status == 404


def test_items_not_started_when_the_budget_is_spent_answer_504():
    fake = FakeExceptions()
    # The budget starts with the first item (t=100); the second starts at 104, the third at 106.
    runner = make_runner(fake, budget=5, clock=Clock(100, 104, 106, 107))
    results = run(runner, batch(CREATE, {"url": "/v1/exceptions/e1"}, CREATE, CREATE))
    assert [r.status for r in results] == [200, 200, 504, 504]
    assert results[2].contents["details"][0]["reason"] == "TIME_BUDGET_EXCEEDED"
    assert len(fake.rows) == 1


def test_the_first_item_always_runs():
    fake = FakeExceptions()
    results = run(make_runner(fake, budget=1e-9), batch(CREATE, CREATE))
    assert [r.status for r in results] == [200, 504]


def test_each_run_item_is_isolated_and_a_failure_outside_the_chain_is_a_500():
    fake = FakeExceptions()
    entered = []

    class Isolation:
        def __enter__(self):
            entered.append(len(entered))

        def __exit__(self, *exc):
            if len(entered) == 2:
                raise RuntimeError("savepoint release failed")
            return False

    runner = make_runner(fake, isolation=Isolation)
    results = run(
        runner, batch(CREATE, CREATE, {"url": "/v1/exceptions/@{later.id}"}, {**CREATE, "id": "later"})
    )
    assert [r.status for r in results] == [200, 500, 424, 200]
    assert entered == [0, 1, 2]  # not for the item that never ran
    assert results[1].contents["message"] == "internal error; quote the request id when reporting it"


def test_an_annotated_rpc_without_a_handler_answers_501():
    results = run(
        make_runner(FakeExceptions(), missing=("GetException",)), batch({"url": "/v1/exceptions/e1"})
    )
    assert (results[0].status, results[0].contents["message"]) == (501, "Method not found!")


@pytest.mark.parametrize("halt", [False, True])
def test_rest_json_keeps_seed_keys_and_echoes_ids(halt):
    request = batch({**CREATE, "id": "c"}, {"url": "/v1/exceptions/e1"}, halt_on_error=halt)
    results = run(make_runner(FakeExceptions()), request)
    assert list(results[0].rest_json()) == ["id", "contents", "headers", "status"]
    assert list(results[1].rest_json()) == ["contents", "headers", "status"]


def test_the_outer_calls_deadline_also_ends_the_batch():
    fake = FakeExceptions()
    runner = make_runner(fake, budget=30, clock=Clock(100, 101))
    results = runner.run(batch(CREATE, CREATE), OuterCall(WRITER, "outer", deadline=100.5))
    assert [r.status for r in results] == [200, 504]


def test_a_substituted_path_bound_to_other_methods_is_envoys_405_with_allow():
    fake = FakeExceptions()
    create = {**CREATE, "id": "c", "data": '{"transaction_id": ""}'}
    item = {"url": "/v1/exceptions/@{c.transaction_id}/dispatch", "method": "POST", "data": "{}"}
    results = run(make_runner(fake), batch(create, item))
    # /v1/exceptions//dispatch is /v1/exceptions/dispatch: only GET (GetException) is bound there.
    assert results[1].status == 405, results[1].contents
    assert results[1].headers["allow"] == "GET"
    reasons = [d.get("reason") for d in results[1].contents["details"]]
    assert "METHOD_NOT_ALLOWED" in reasons
    assert results[1].contents["details"][-1]["request_id"] == results[1].headers["x-request-id"]
