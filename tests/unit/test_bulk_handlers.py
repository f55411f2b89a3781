"""The in-process handler table of /v1/bulk: what add_servicers registers, wrapped the way grpc wraps
it, and the auth rule for sub-request contexts and token_required RPCs."""

import grpc
import pytest
from reconrouter.bulk.v1 import bulk_pb2_grpc
from reconrouter.deliveries.v1 import deliveries_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2_grpc
from reconrouter.health.v1 import health_pb2_grpc
from reconrouter.hooks.v1 import hooks_pb2_grpc
from reconrouter.meta.v1 import meta_pb2_grpc
from reconrouter.routing.v1 import routing_pb2_grpc
from reconrouter.targets.v1 import targets_pb2_grpc

from server.bulk.context import SubRequestContext
from server.contract.methods import load_methods
from server.domain.auth import Principal
from server.domain.errors import PermissionDenied, Unauthenticated
from server.rpc import call_state
from server.rpc.handlers import HandlerCollector, InProcessHandlers
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.base import UnaryInterceptor
from server.rpc.recording_context import CallAborted
from server.rpc.server import Servicers, add_servicers
from tests.unit.fake_grpc import FakeContext

METHODS = load_methods()
BATCH = "/reconrouter.bulk.v1.BulkService/BatchJson"
CREATE = "/reconrouter.exceptions.v1.ExceptionsService/CreateException"
GENERATED_ADD_FUNCTIONS = (
    exceptions_pb2_grpc.add_ExceptionsServiceServicer_to_server,
    health_pb2_grpc.add_HealthServiceServicer_to_server,
    targets_pb2_grpc.add_TargetsServiceServicer_to_server,
    deliveries_pb2_grpc.add_DeliveriesServiceServicer_to_server,
    bulk_pb2_grpc.add_BulkServiceServicer_to_server,
    meta_pb2_grpc.add_MetaServiceServicer_to_server,
    hooks_pb2_grpc.add_HooksServiceServicer_to_server,
    routing_pb2_grpc.add_RoutingRulesServiceServicer_to_server,
    routing_pb2_grpc.add_SlaPolicyServiceServicer_to_server,
)
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
    servicers = Servicers()
    for add_to_server in GENERATED_ADD_FUNCTIONS:
        servicers.add(Anything(), add_to_server)
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
    state = call_state.new_call("rid", method, METHODS.get(method))
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


def test_a_nested_call_runs_as_its_caller_and_its_authorization_header_is_not_read():
    context = SubRequestContext([("authorization", "Bearer forged")], None)
    with call_state.nested_calls_as(PRINCIPAL):
        assert authorize("/reconrouter.exceptions.v1.ExceptionsService/GetException", context) is PRINCIPAL
        with pytest.raises(PermissionDenied):
            authorize(CREATE, context)  # the inherited caller still needs the scope
    # Outside the block the same context is a call like any other: its header is the token.
    with pytest.raises(Unauthenticated):
        authorize("/reconrouter.exceptions.v1.ExceptionsService/GetException", context)


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
    context = SubRequestContext([("x-request-id", "r")], deadline=None)
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
