"""Builds the grpc.server: interceptors, servicers, the standard health service and reflection."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from reconrouter.exceptions.v1 import exceptions_pb2_grpc
from reconrouter.health.v1 import health_pb2_grpc as rest_health_pb2_grpc

from server.rpc.methods import service_names
from server.rpc.servicers.exceptions import ExceptionsServicer
from server.rpc.servicers.health import HealthServicer


@dataclass
class Servicers:
    exceptions: ExceptionsServicer
    health: HealthServicer


def build_server(
    servicers: Servicers,
    interceptors: list[grpc.ServerInterceptor],
    *,
    max_workers: int,
    max_message_bytes: int,
    reuse_port: bool = False,
) -> tuple[grpc.Server, health.HealthServicer]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes * 4),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    add_servicers(servicers, server)
    grpc_health = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(grpc_health, server)
    names = [*service_names(), health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    for name in ("", *service_names()):
        grpc_health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, grpc_health


def add_servicers(servicers: Servicers, server: grpc.Server) -> None:
    """(servicer, server) like grpc's own add_*_to_server; pytest-grpc's fixtures call it too."""
    exceptions_pb2_grpc.add_ExceptionsServiceServicer_to_server(servicers.exceptions, server)
    rest_health_pb2_grpc.add_HealthServiceServicer_to_server(servicers.health, server)
