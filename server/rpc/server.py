"""Builds the gRPC server: every method's intercepted behaviour, served by grpc.aio
(server/rpc/async_server.py), plus the standard health service and reflection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import grpc

from server.contract.methods import MethodInfo, service_names
from server.rpc.async_server import AsyncServer, serve_behaviour
from server.rpc.handlers import InProcessHandlers, intercepted_handlers, unary_behaviour

MAX_METADATA_BYTES = 128 * 1024


# A generated add_*Servicer_to_server function: (servicer, server) -> None.
AddToServer = Callable[[Any, Any], None]


@dataclass
class Servicers:
    """Every servicer the server serves, each with the generated function that registers it. The
    composition root (server/bootstrap.py) fills it; nothing here knows which features exist."""

    registrations: list[tuple[Any, AddToServer]] = field(default_factory=list)

    def add(self, servicer: Any, add_to_server: AddToServer) -> None:
        self.registrations.append((servicer, add_to_server))

    def add_to(self, server: Any) -> None:
        for servicer, add_to_server in self.registrations:
            add_to_server(servicer, server)


def build_server(
    servicers: Servicers,
    interceptors: list[grpc.ServerInterceptor],
    methods: Mapping[str, MethodInfo],
    *,
    reads_inline: bool,
    max_workers: int,
    max_message_bytes: int,
    reuse_port: bool = False,
    loop_thread_context: Callable[[], AbstractContextManager[Any]] | None = None,
    waiting_methods: frozenset[str] = frozenset(),
    waiting_workers: int = 32,
) -> AsyncServer:
    """reads_inline: serve the methods that change nothing (GET routes) on the event loop thread
    rather than on the pool of `max_workers` threads (server/rpc/async_server.py says when).
    waiting_methods run on a pool of `waiting_workers` threads of their own: calls that may wait
    for something outside the request (a dispatch waits for first delivery outcomes), so their
    waiting never takes the threads that serve every other call."""
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
    waiting_pool = futures.ThreadPoolExecutor(max_workers=waiting_workers, thread_name_prefix="rpc-wait")
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            serve_behaviour(
                unary_behaviour(method, wrapped),
                inline=reads_inline and not methods[method].mutating,
                pool=waiting_pool if method in waiting_methods else pool,
            ),
            request_deserializer=wrapped.request_deserializer,
            response_serializer=wrapped.response_serializer,
        )
        for method, wrapped in intercepted_handlers(servicers.add_to, interceptors, methods).items()
    }
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes * 4),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Above Envoy's request header limit (60 KiB, then a JSON 431), so that Envoy is the one
        # limit REST callers meet: with gRPC's default (16 KiB hard) a 20-60 KiB header passed
        # Envoy and came back as a bare 429 RESOURCE_EXHAUSTED (docs/hardening.md).
        ("grpc.max_metadata_size", MAX_METADATA_BYTES),
        ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ]
    return AsyncServer(
        handlers,
        service_names(),
        options=options,
        pools=(pool, waiting_pool),
        loop_thread_context=loop_thread_context,
    )


def add_servicers(servicers: Servicers, server: Any) -> None:
    """(servicer, server) like grpc's own add_*_to_server; pytest-grpc's fixtures call it too."""
    servicers.add_to(server)


def in_process_handlers(
    servicers: Servicers, interceptors: list[grpc.ServerInterceptor], methods: Iterable[str]
) -> InProcessHandlers:
    """The method handlers the server serves, wrapped by `interceptors` (the server's chain) exactly as
    grpc wraps them per call, callable in process; resolved once, here."""
    return InProcessHandlers.collect(servicers.add_to, interceptors, methods)
