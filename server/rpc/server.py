"""Builds the gRPC server: every method's intercepted behaviour, served by grpc.aio
(server/rpc/async_server.py), plus the standard health service and reflection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import grpc
from reconrouter.bulk.v1 import bulk_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2_grpc
from reconrouter.health.v1 import health_pb2_grpc as rest_health_pb2_grpc
from reconrouter.meta.v1 import meta_pb2_grpc
from reconrouter.targets.v1 import targets_pb2_grpc

from server.rpc.async_server import AsyncServer, serve_behaviour
from server.rpc.bulk.handlers import InProcessHandlers, intercepted_handlers
from server.rpc.methods import MethodInfo, service_names
from server.rpc.servicers.bulk import BulkServicer
from server.rpc.servicers.exceptions import ExceptionsServicer
from server.rpc.servicers.health import HealthServicer
from server.rpc.servicers.meta import MetaServicer
from server.rpc.servicers.targets import TargetsServicer

MAX_METADATA_BYTES = 128 * 1024


@dataclass
class Servicers:
    exceptions: ExceptionsServicer
    health: HealthServicer
    targets: TargetsServicer
    bulk: BulkServicer
    meta: MetaServicer  # GET /openapi.json


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
) -> AsyncServer:
    """reads_inline: serve the methods that change nothing (GET routes) on the event loop thread
    rather than on the pool of `max_workers` threads (server/rpc/async_server.py says when)."""
    pool = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            serve_behaviour(
                wrapped.unary_unary, inline=reads_inline and not methods[method].mutating, pool=pool
            ),
            request_deserializer=wrapped.request_deserializer,
            response_serializer=wrapped.response_serializer,
        )
        for method, wrapped in intercepted_handlers(
            lambda collector: add_servicers(servicers, collector), interceptors, methods
        ).items()
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
        handlers, service_names(), options=options, pool=pool, loop_thread_context=loop_thread_context
    )


def add_servicers(servicers: Servicers, server: grpc.Server) -> None:
    """(servicer, server) like grpc's own add_*_to_server; pytest-grpc's fixtures call it too."""
    exceptions_pb2_grpc.add_ExceptionsServiceServicer_to_server(servicers.exceptions, server)
    rest_health_pb2_grpc.add_HealthServiceServicer_to_server(servicers.health, server)
    targets_pb2_grpc.add_TargetsServiceServicer_to_server(servicers.targets, server)
    bulk_pb2_grpc.add_BulkServiceServicer_to_server(servicers.bulk, server)
    meta_pb2_grpc.add_MetaServiceServicer_to_server(servicers.meta, server)


def bind_in_process(
    servicers: Servicers, interceptors: list[grpc.ServerInterceptor], methods: Iterable[str]
) -> None:
    """Gives /v1/bulk the method handlers that add_servicers registers, wrapped by `interceptors`
    (the server's chain) exactly as grpc wraps them per call; resolved once, here."""
    handlers = InProcessHandlers.collect(
        lambda collector: add_servicers(servicers, collector), interceptors, methods
    )
    servicers.bulk.runner.bind(handlers)
