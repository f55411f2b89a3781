"""The composition root: the only place that builds engines, services, servicers and the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry
from reconrouter.bulk.v1 import bulk_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2_grpc
from reconrouter.health.v1 import health_pb2_grpc
from reconrouter.meta.v1 import meta_pb2_grpc
from reconrouter.targets.v1 import targets_pb2_grpc
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from server.bulk.isolation import savepoint_per_request
from server.bulk.runner import BulkLimits, BulkRunner
from server.bulk.servicer import BulkServicer
from server.config import Settings
from server.connectors.http import HttpSettings
from server.connectors.registry import ConnectorRegistry
from server.connectors.resilience import RetryPolicy
from server.connectors.ssrf import AddressPolicy
from server.contract.methods import MethodInfo, load_methods
from server.contract.routes import RouteTable
from server.domain.idempotency import Policy
from server.metrics import Metrics
from server.rpc.async_server import AsyncServer
from server.rpc.interceptors.auth import AuthInterceptor
from server.rpc.interceptors.errors import ErrorInterceptor
from server.rpc.interceptors.idempotency import IdempotencyInterceptor
from server.rpc.interceptors.rate_limit import RateLimitInterceptor
from server.rpc.interceptors.request_guard import RequestGuardInterceptor
from server.rpc.interceptors.request_id import RequestIdInterceptor
from server.rpc.server import Servicers, build_server, in_process_handlers
from server.rpc.servicers.exceptions import ExceptionsServicer
from server.rpc.servicers.health import HealthServicer
from server.rpc.servicers.meta import MetaServicer, read_openapi_document
from server.rpc.servicers.targets import TargetsServicer
from server.services.dispatch import DispatchService
from server.services.exceptions import ExceptionService
from server.services.principal_cache import PrincipalCache
from server.services.rate_limit import RateLimiter
from server.services.targets import TargetService
from server.services.tokens import TokenService
from server.storage.engine import count_statements, make_engine, reads_never_wait
from server.storage.failures import make_ping, translate_db_error
from server.storage.idempotency import SqlIdempotencyStore
from server.storage.rate_limits import SqlCounterStore
from server.storage.secret_box import FernetSecretBox, load_keys
from server.storage.uow import SqlUnitOfWorkFactory


@dataclass
class App:
    settings: Settings
    engine: Engine
    methods: dict[str, MethodInfo]
    tokens: TokenService
    exceptions: ExceptionService
    dispatch: DispatchService
    targets: TargetService
    connectors: ConnectorRegistry
    idempotency: SqlIdempotencyStore
    rate_limiter: RateLimiter
    uow: SqlUnitOfWorkFactory
    metrics: Metrics | None = None

    def servicers(self) -> Servicers:
        servicers = Servicers()
        servicers.add(
            ExceptionsServicer(self.exceptions, self.dispatch),
            exceptions_pb2_grpc.add_ExceptionsServiceServicer_to_server,
        )
        servicers.add(
            HealthServicer(make_ping(self.engine)), health_pb2_grpc.add_HealthServiceServicer_to_server
        )
        servicers.add(TargetsServicer(self.targets), targets_pb2_grpc.add_TargetsServiceServicer_to_server)
        servicers.add(MetaServicer(read_openapi_document()), meta_pb2_grpc.add_MetaServiceServicer_to_server)
        bulk = BulkServicer(self._bulk_runner())
        servicers.add(bulk, bulk_pb2_grpc.add_BulkServiceServicer_to_server)
        # /v1/bulk calls every other servicer through this same interceptor chain, in process.
        bulk.runner.bind(in_process_handlers(servicers, self.interceptors(), self.methods))
        return servicers

    def _bulk_runner(self) -> BulkRunner:
        limits = BulkLimits(self.settings.bulk_max_requests, self.settings.bulk_time_budget_seconds)
        observe = self.metrics.observe_subrequest if self.metrics else None
        return BulkRunner(RouteTable(self.methods), limits, savepoint_per_request(self.uow), observe=observe)

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        """Outermost first: request id + access log, errors, request guard, auth, rate limit (idempotency
        last)."""
        return [
            RequestIdInterceptor(self.methods, self.metrics.observe_call if self.metrics else None),
            ErrorInterceptor(translate_db_error),
            RequestGuardInterceptor(),  # invalid UTF-8, NUL characters: 400 (docs/hardening.md)
            AuthInterceptor(self.methods, self.tokens.authenticate),
            RateLimitInterceptor(self.methods, self.rate_limiter.check),
            IdempotencyInterceptor(self.methods, self.idempotency),
        ]

    def close(self) -> None:
        self.connectors.close()
        self.engine.dispose()


def build_app(settings: Settings, metrics_registry: CollectorRegistry | None = None) -> App:
    """metrics_registry: where this process's metrics go (None: no metrics, e.g. CLI commands)."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    uow = SqlUnitOfWorkFactory(engine)
    targets, connectors = _dispatch_parts(settings, uow)
    metrics = None
    if metrics_registry is not None:
        pool = engine.pool
        # make_engine's pools are QueuePools (it sets pool_size); no other pool counts checkouts.
        checked_out = pool.checkedout if isinstance(pool, QueuePool) else (lambda: 0)
        metrics = Metrics(metrics_registry, pool_checked_out=checked_out)
        count_statements(engine, metrics.observe_statement)
    return App(
        settings=settings,
        engine=engine,
        methods=load_methods(),
        idempotency=SqlIdempotencyStore(
            uow,
            Policy.of_seconds(settings.idempotency_ttl_seconds, settings.idempotency_lock_timeout_seconds),
        ),
        tokens=TokenService(uow, cache=PrincipalCache(settings.auth_cache_seconds)),
        exceptions=ExceptionService(uow),
        dispatch=DispatchService(
            uow,
            targets,
            connectors,
            pool_size=settings.dispatch_pool_size,
            claim_timeout=timedelta(seconds=settings.dispatch_claim_timeout_seconds),
            observe=metrics.observe_dispatch if metrics else None,
        ),
        targets=targets,
        connectors=connectors,
        rate_limiter=RateLimiter(SqlCounterStore(uow), {"dispatch": settings.rate_limit_dispatch_per_minute}),
        uow=uow,
        metrics=metrics,
    )


def _dispatch_parts(settings: Settings, uow: SqlUnitOfWorkFactory) -> tuple[TargetService, ConnectorRegistry]:
    """Target configuration and the connectors, sharing one SSRF policy (docs/targets.md)."""
    policy = AddressPolicy(allow_private=settings.dispatch_allow_private_networks)
    box = FernetSecretBox(load_keys(settings.target_secrets_key, Path(settings.target_secrets_key_file)))
    connectors = ConnectorRegistry.from_settings(
        policy,
        HttpSettings(settings.dispatch_connect_timeout_seconds, settings.dispatch_read_timeout_seconds),
        RetryPolicy(
            settings.dispatch_max_attempts,
            settings.dispatch_backoff_initial_seconds,
            settings.dispatch_backoff_max_seconds,
        ),
        settings.dispatch_breaker_failures,
        settings.dispatch_breaker_reset_seconds,
    )
    return TargetService(uow, box, policy.check_url), connectors


def build_grpc_server(app: App, *, shared_port: bool = False) -> AsyncServer:
    """shared_port: several worker processes bind the same port (SO_REUSEPORT). Off otherwise, so a
    port already taken is an error instead of a silent split of the traffic."""
    settings = app.settings
    # Reads run on the event loop only where they cannot wait: SQLite's WAL readers never wait for
    # a writer, while a PostgreSQL read is a network round trip (server/rpc/async_server.py).
    local_reads = reads_never_wait(app.engine)
    server = build_server(
        app.servicers(),
        app.interceptors(),
        app.methods,
        reads_inline=local_reads,
        max_workers=settings.grpc_max_workers,
        max_message_bytes=settings.max_body_bytes,
        reuse_port=shared_port,
        # Inline reads must never wait for the pool: the loop thread keeps a connection of its own.
        loop_thread_context=app.uow.keep_read_connection if local_reads else None,
    )
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    return server
