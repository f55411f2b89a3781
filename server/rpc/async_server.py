"""gRPC's asyncio server in front of the synchronous interceptors and servicers.

Why not grpc's threaded server: there every call runs on a pool thread, and each time the call
releases the GIL (a database read does, twice or more) another of the pool's threads takes it, so
a point read cost more in thread hand-offs than in work (docs/benchmarks.md measured 50-90 futex
calls per GetException). Here one event loop thread owns the network side and runs each method in
one of two places, chosen per method once at start-up:

- inline, on the loop thread, for calls that wait on nothing but local memory and disk (the
  reads, when the database is SQLite in WAL mode, whose readers never wait for a writer);
- on the pool (GRPC_MAX_WORKERS threads) for everything that can wait: writes (a lock, a
  busy timeout), connectors (HTTP to JIRA and friends), and every call on PostgreSQL (a network
  round trip, or a dead server, must never stall the loop that serves the health checks).

Either way the method is the same intercepted behaviour the threaded server ran, with a
RecordingContext (WireContext) whose recorded metadata and status this module delivers.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.rpc.handlers import Behavior
from server.rpc.recording_context import CallAborted, RecordingContext


class WireContext(RecordingContext):
    """A wire call's context for the synchronous behaviour: reads from grpc's asyncio context,
    records what the behaviour sends."""

    def __init__(self, call: aio.ServicerContext) -> None:
        super().__init__()
        self._call = call
        self._metadata: tuple[tuple[str, str | bytes], ...] | None = None

    def invocation_metadata(self):
        # grpc builds a new tuple on every ask; the interceptors ask for several headers.
        if self._metadata is None:
            # tuple() returns grpc's tuple itself (and turns an aio.Metadata, as the stubs type it,
            # into one).
            self._metadata = tuple(self._call.invocation_metadata() or ())
        return self._metadata

    # None without a deadline, as grpc documents for ServicerContext.time_remaining (its stub says
    # float) and as grpc.aio's context returns.
    def time_remaining(self) -> float | None:  # type: ignore[override]
        return self._call.time_remaining()

    def is_active(self) -> bool:
        return not (self._call.done() or self._call.cancelled())

    def peer(self) -> str:
        return self._call.peer()

    async def deliver(self, response: Any) -> Any:
        """Sends what the behaviour recorded; returns the response or raises grpc's AbortError."""
        if self.initial_metadata:
            await self._call.send_initial_metadata(self.initial_metadata)
        if self.code not in (None, grpc.StatusCode.OK):
            await self._call.abort(self.code, self.details, tuple(self.trailing_metadata))
        if self.trailing_metadata:
            self._call.set_trailing_metadata(self.trailing_metadata)
        return response


def serve_behaviour(
    behaviour: Behavior, *, inline: bool, pool: futures.Executor
) -> Callable[[Any, aio.ServicerContext], Any]:
    """The coroutine grpc.aio calls for one method."""

    async def run_inline(request: Any, call: aio.ServicerContext) -> Any:
        context = WireContext(call)
        try:
            response = behaviour(request, context)
        except CallAborted:
            response = None
        return await context.deliver(response)

    async def run_on_pool(request: Any, call: aio.ServicerContext) -> Any:
        context = WireContext(call)
        # The call's context variables travel with it (grpc.aio gives each call its own task).
        run = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(pool, run, behaviour, request, context)
        except CallAborted:
            response = None
        return await context.deliver(response)

    return run_inline if inline else run_on_pool


class _MethodTable(grpc.GenericRpcHandler):
    def __init__(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = dict(handlers)

    def service(self, handler_call_details):
        return self._handlers.get(handler_call_details.method)


class AsyncServer:
    """A grpc.aio server on an event loop of its own thread, driven from synchronous code
    (server/process/serve.py): start(), enter_graceful_shutdown(), stop(grace)."""

    def __init__(
        self,
        handlers: Mapping[str, grpc.RpcMethodHandler],
        service_names: Sequence[str],
        *,
        options: Sequence[tuple[str, Any]],
        pools: Sequence[futures.ThreadPoolExecutor],
        loop_thread_context: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """loop_thread_context: entered on the loop thread before serving, left after the server
        stopped (the loop thread's own database connection)."""
        self._handlers = handlers
        self._service_names = list(service_names)
        self._options = list(options)
        self._pools = tuple(pools)
        self._addresses: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop", daemon=True)
        self._loop_thread_context = loop_thread_context
        self._loop_thread_resources = ExitStack()
        self._server: aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    def add_insecure_port(self, address: str) -> None:
        self._addresses.append(address)

    def _on_loop(self, coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _start(self) -> None:
        if self._loop_thread_context is not None:
            self._loop_thread_resources.enter_context(self._loop_thread_context())
        server = aio.server(options=self._options)
        server.add_generic_rpc_handlers((_MethodTable(self._handlers),))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        for address in self._addresses:
            server.add_insecure_port(address)  # raises RuntimeError when the port is taken
        await server.start()
        self._server = server

    def start(self) -> None:
        self._thread.start()
        try:
            self._on_loop(self._start())
        except BaseException:
            self._close_loop()
            raise

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service, so health-checking proxies stop routing here."""
        assert self._health is not None
        self._on_loop(self._health.enter_graceful_shutdown())

    def stop(self, grace: float | None) -> None:
        """Refuses new calls, gives calls in flight `grace` seconds, then the pool's work ends."""
        if self._server is not None:
            self._on_loop(self._server.stop(grace))
        # Calls whose callers are gone by now may still be running on the pool: let them finish
        # (nothing half-done), but start none of those still queued.
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._close_loop()

    async def _release_loop_thread_resources(self) -> None:
        self._loop_thread_resources.close()

    def _close_loop(self) -> None:
        self._on_loop(self._release_loop_thread_resources())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
