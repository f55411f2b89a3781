from __future__ import annotations

from collections.abc import Callable

from reconrouter.health.v1 import health_pb2, health_pb2_grpc


class HealthServicer(health_pb2_grpc.HealthServiceServicer):
    """GET /livez answers while the process runs; GET /healthz only when the database answers too
    (ping raises Unavailable otherwise)."""

    def __init__(self, ping: Callable[[], None]) -> None:
        self._ping = ping

    def Live(self, request, context):
        return health_pb2.LiveResponse(status="LIVE")

    def Check(self, request, context):
        self._ping()
        return health_pb2.CheckResponse(status="SERVING")
