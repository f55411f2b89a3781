"""The composition root: the only place that builds engines, services, servicers and the server."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from server.config import Settings
from server.connectors.registry import ConnectorRegistry
from server.metrics import Metrics
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.errors import ErrorInterceptor
from server.rpc.interceptors.request_id import RequestIdInterceptor
from server.rpc.methods import MethodInfo, load_methods
from server.rpc.server import Servicers, build_server
from server.rpc.servicers.exceptions import ExceptionsServicer
from server.rpc.servicers.health import HealthServicer
from server.services.dispatch import DispatchService
from server.services.exceptions import ExceptionService
from server.services.tokens import TokenService
from server.storage.engine import make_engine
from server.storage.failures import make_ping, translate_db_error
from server.storage.uow import SqlUnitOfWorkFactory


@dataclass
class App:
    settings: Settings
    engine: Engine
    methods: dict[str, MethodInfo]
    tokens: TokenService
    exceptions: ExceptionService
    dispatch: DispatchService
    metrics: Metrics | None = None

    def servicers(self) -> Servicers:
        return Servicers(
            exceptions=ExceptionsServicer(self.exceptions, self.dispatch),
            health=HealthServicer(make_ping(self.engine)),
        )

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        """Outermost first: request id + access log, errors, auth (idempotency slots in last)."""
        return [
            RequestIdInterceptor(self.methods, self.metrics.observe_call if self.metrics else None),
            ErrorInterceptor(translate_db_error),
            AuthInterceptor(self.methods, self.tokens.authenticate),
        ]

    def close(self) -> None:
        self.engine.dispose()


def build_app(settings: Settings, metrics_registry: CollectorRegistry | None = None) -> App:
    """metrics_registry: where this process's metrics go (None: no metrics, e.g. CLI commands)."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    uow = SqlUnitOfWorkFactory(engine)
    metrics = None
    if metrics_registry is not None:
        metrics = Metrics(metrics_registry, pool_checked_out=engine.pool.checkedout)
    return App(
        settings=settings,
        engine=engine,
        methods=load_methods(),
        tokens=TokenService(uow),
        exceptions=ExceptionService(uow),
        dispatch=DispatchService(uow, ConnectorRegistry()),
        metrics=metrics,
    )


def build_grpc_server(app: App, *, shared_port: bool = False):
    """shared_port: several worker processes bind the same port (SO_REUSEPORT). Off otherwise, so a
    port already taken is an error instead of a silent split of the traffic."""
    settings = app.settings
    server, grpc_health = build_server(
        app.servicers(),
        app.interceptors(),
        max_workers=settings.grpc_max_workers,
        max_message_bytes=settings.max_body_bytes,
        reuse_port=shared_port,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.grpc_host}:{settings.grpc_port}")
    return server, grpc_health
