"""The asyncio server in front of synchronous behaviours (server/rpc/async_server.py), over a real
gRPC channel: where each method runs, and that what a behaviour records reaches the caller."""

from __future__ import annotations

import contextlib
import threading
from concurrent import futures

import grpc
import pytest

from server.rpc.async_server import AsyncServer, serve_behaviour
from tests.support.stack import free_port

READ = "/test.Service/Read"
WRITE = "/test.Service/Write"
FAIL = "/test.Service/Fail"
TRAILERS = (("x-detail-bin", b"\x00\x01"),)


def _thread_name(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.send_initial_metadata((("x-request-id", request.decode()),))
    return threading.current_thread().name.encode()


def _echo_with_thread_name(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request + b"@" + threading.current_thread().name.encode()


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_trailing_metadata(TRAILERS)
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"refused {request.decode()}")
    raise AssertionError("abort() returns")


@pytest.fixture
def served():
    port = free_port()
    pool = futures.ThreadPoolExecutor(2, thread_name_prefix="rpc")
    loop_thread_entered = []

    @contextlib.contextmanager
    def on_loop_thread():
        loop_thread_entered.append(threading.current_thread().name)
        yield

    handlers = {
        READ: grpc.unary_unary_rpc_method_handler(serve_behaviour(_thread_name, inline=True, pool=pool)),
        WRITE: grpc.unary_unary_rpc_method_handler(
            serve_behaviour(_echo_with_thread_name, inline=False, pool=pool)
        ),
        FAIL: grpc.unary_unary_rpc_method_handler(serve_behaviour(_abort, inline=False, pool=pool)),
    }
    server = AsyncServer(handlers, [], options=[], pools=[pool], loop_thread_context=on_loop_thread)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, loop_thread_entered
    finally:
        channel.close()
        server.stop(1)


def test_inline_methods_run_on_the_loop_thread_and_send_their_initial_metadata(served):
    channel, loop_thread_entered = served
    response, call = channel.unary_unary(READ).with_call(b"abc", timeout=10)
    assert response == b"grpc-loop"
    assert ("x-request-id", "abc") in call.initial_metadata()
    assert loop_thread_entered == ["grpc-loop"]


def test_pool_methods_run_on_a_pool_thread(served):
    channel, _ = served
    value, _, thread = channel.unary_unary(WRITE)(b"mine", timeout=10).decode().partition("@")
    assert value == "mine"
    assert thread.startswith("rpc")


def test_an_abort_reaches_the_caller_with_its_code_details_and_trailers(served):
    channel, _ = served
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(FAIL)(b"this", timeout=10)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details() == "refused this"
    assert TRAILERS[0] in raised.value.trailing_metadata()


def test_an_unknown_method_is_unimplemented(served):
    channel, _ = served
    with pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary("/test.Service/Missing")(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_health_service_answers_serving():
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = free_port()
    server = AsyncServer({}, ["test.Service"], options=[], pools=[futures.ThreadPoolExecutor(1)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = stub.Check(health_pb2.HealthCheckRequest(service="test.Service"), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            server.enter_graceful_shutdown()
            answer = stub.Check(health_pb2.HealthCheckRequest(service="test.Service"), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(1)


def test_a_port_that_is_taken_is_an_error():
    port = free_port()
    first = AsyncServer({}, [], options=[("grpc.so_reuseport", 0)], pools=[futures.ThreadPoolExecutor(1)])
    first.add_insecure_port(f"127.0.0.1:{port}")
    first.start()
    try:
        second = AsyncServer(
            {}, [], options=[("grpc.so_reuseport", 0)], pools=[futures.ThreadPoolExecutor(1)]
        )
        second.add_insecure_port(f"127.0.0.1:{port}")
        with pytest.raises(RuntimeError, match="Failed to bind"):
            second.start()
    finally:
        first.stop(1)
