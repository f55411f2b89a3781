from __future__ import annotations

from collections.abc import Callable

from reconrouter.health.v1 import health_pb2, health_pb2_grpc


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    """GET /healthz: answers only when the database does (ping raises Unavailable otherwise)."""

    def __init__(self, ping: Callable[[], None]) -> None:
        self._ping = ping

    def Check(self, request, context):
        self._ping()
        return health_pb2.CheckResponse(status="SERVING")
