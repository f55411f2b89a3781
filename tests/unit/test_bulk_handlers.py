"""The in-process handler table of /v1/bulk: what add_servicers registers, wrapped the way grpc wraps
it, and the auth rule for sub-request contexts and token_required RPCs."""

import grpc
import pytest

from server.domain.auth import Principal
from server.domain.errors import PermissionDenied, Unauthenticated
from server.rpc import call_state
from server.rpc.bulk.context import SubRequestContext
from server.rpc.bulk.handlers import HandlerCollector, InProcessHandlers
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.base import UnaryInterceptor
from server.rpc.methods import load_methods
from server.rpc.recording_context import CallAborted
from server.rpc.server import Servicers, add_servicers
from tests.unit.fake_grpc import FakeContext

METHODS = load_methods()
BATCH = "/reconrouter.bulk.v1.BulkService/BatchJson"
CREATE = "/reconrouter.exceptions.v1.ExceptionsService/CreateException"
PRINCIPAL = Principal("t", "tok", frozenset({"exceptions:read"}))


class Recording(UnaryInterceptor):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def around(self, method, request, context, proceed):
        self.log.append(f"{self.name}>{method.rsplit('/', 1)[-1]}")
        return proceed(request, context)


class Anything:
    """A servicer whose every method answers its own name."""

    def __getattr__(self, name):
        return lambda request, context: name


def test_every_rpc_add_servicers_registers_is_resolved_and_wrapped_outermost_first():
    servicers = Servicers(**{f: Anything() for f in Servicers.__dataclass_fields__})
    log: list[str] = []
    interceptors = [Recording("outer", log), Recording("inner", log)]
    handlers = InProcessHandlers.collect(lambda c: add_servicers(servicers, c), interceptors, METHODS)
    for method in METHODS:
        assert handlers.get(method) is not None, method
    assert handlers.get(CREATE)(None, FakeContext()) == "CreateException"
    assert log == ["outer>CreateException", "inner>CreateException"]
    assert handlers.get("/nope.Service/Nothing") is None


def test_generic_handlers_are_found_too():
    collector = HandlerCollector()
    unary = grpc.unary_unary_rpc_method_handler(lambda request, context: "ok")
    collector.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("pkg.Svc", {"Do": unary})])
    assert collector.find("/pkg.Svc/Do") is unary
    assert collector.find("/pkg.Svc/Other") is None


def authorize(method, context):
    state = call_state.CallState("rid", method, METHODS.get(method))
    token = call_state.enter(state)
    try:
        AuthInterceptor(METHODS, authenticate).around(method, None, context, lambda r, c: "ran")
        return state.principal
    finally:
        call_state.leave(token)


def authenticate(token):
    if token != "good":
        raise Unauthenticated("unknown token")
    return Principal("t", "tok", frozenset())


def test_a_sub_request_context_carries_the_caller_and_its_authorization_header_is_not_read():
    context = SubRequestContext([("authorization", "Bearer forged")], PRINCIPAL, None)
    assert authorize("/reconrouter.exceptions.v1.ExceptionsService/GetException", context) is PRINCIPAL
    with pytest.raises(PermissionDenied):
        authorize(CREATE, context)  # the inherited caller still needs the scope


def test_token_required_rpcs_need_a_valid_token_and_no_scope():
    assert METHODS[BATCH].token_required and not METHODS[BATCH].public and not METHODS[BATCH].required_scope
    assert METHODS["/reconrouter.health.v1.HealthService/Check"].public
    scopeless = authorize(BATCH, FakeContext([("authorization", "Bearer good")]))
    assert scopeless.scopes == frozenset()
    with pytest.raises(Unauthenticated):
        authorize(BATCH, FakeContext())
    with pytest.raises(Unauthenticated):
        authorize(BATCH, FakeContext([("authorization", "Bearer bad")]))


def test_the_context_records_what_the_chain_sends():
    context = SubRequestContext([("x-request-id", "r")], PRINCIPAL, deadline=None)
    context.send_initial_metadata([("x-request-id", "r")])
    with pytest.raises(RuntimeError):
        context.send_initial_metadata([("again", "1")])
    status = type(
        "S", (), {"code": grpc.StatusCode.NOT_FOUND, "details": "gone", "trailing_metadata": (("k", "v"),)}
    )
    with pytest.raises(CallAborted):
        context.abort_with_status(status)
    assert (context.code, context.details, context.trailing_metadata) == (
        grpc.StatusCode.NOT_FOUND,
        "gone",
        (("k", "v"),),
    )
    assert context.time_remaining() is None and context.invocation_metadata()[0].key == "x-request-id"
