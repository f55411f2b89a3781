"""The composition root: the only place that builds engines, services, servicers and the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry
from reconrouter.bulk.v1 import bulk_pb2_grpc
from reconrouter.deliveries.v1 import deliveries_pb2_grpc
from reconrouter.exceptions.v1 import exceptions_pb2_grpc
from reconrouter.health.v1 import health_pb2_grpc
from reconrouter.hooks.v1 import hooks_pb2_grpc
from reconrouter.meta.v1 import meta_pb2_grpc
from reconrouter.routing.v1 import routing_pb2_grpc
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
from server.delivery.schedule import RetrySchedule
from server.delivery.worker import DeliveryWorker, WorkerSettings
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
from server.rpc.servicers.deliveries import DeliveriesServicer
from server.rpc.servicers.exceptions import ExceptionsServicer
from server.rpc.servicers.health import HealthServicer
from server.rpc.servicers.hooks import HooksServicer
from server.rpc.servicers.meta import MetaServicer, read_openapi_document
from server.rpc.servicers.routing import RoutingRulesServicer, SlaPolicyServicer
from server.rpc.servicers.targets import TargetsServicer
from server.services.deliveries import DeliveryService
from server.services.dispatch import DispatchService, WaitSlots
from server.services.exceptions import ExceptionService
from server.services.hooks import HookService
from server.services.principal_cache import PrincipalCache
from server.services.rate_limit import RateLimiter
from server.services.routing import RoutingService, RulesCache
from server.services.sla import SlaService
from server.services.targets import TargetService
from server.services.tokens import TokenService
from server.storage.engine import count_statements, make_engine, reads_never_wait, write_gate
from server.storage.failures import make_ping, translate_db_error
from server.storage.idempotency import SqlIdempotencyStore
from server.storage.rate_limits import SqlCounterStore
from server.storage.secret_box import FernetSecretBox, load_keys
from server.storage.uow import SqlUnitOfWorkFactory

# Calls that may wait for delivery outcomes: served by a pool of their own (server/rpc/server.py).
WAITING_METHODS = frozenset(
    {
        "/reconrouter.exceptions.v1.ExceptionsService/DispatchException",
        "/reconrouter.exceptions.v1.ExceptionsService/BulkDispatchExceptions",
        "/reconrouter.bulk.v1.BulkService/BatchJson",
        "/reconrouter.bulk.v1.BulkService/Batch",
    }
)


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
    deliveries: DeliveryService
    hooks: HookService
    routing: RoutingService
    metrics: Metrics | None = None
    worker: DeliveryWorker | None = None

    def start_delivery_worker(self) -> DeliveryWorker:
        """This process's delivery workers (docs/delivery.md); a dispatch recorded here wakes them."""
        settings = self.settings
        worker = DeliveryWorker(
            self.uow,
            self.deliveries,
            self.connectors,
            self.targets.config_for,
            RetrySchedule(
                settings.delivery_retry_base_seconds,
                settings.delivery_retry_max_wait_seconds,
                settings.delivery_retry_horizon,
            ),
            WorkerSettings(
                concurrency=settings.delivery_concurrency,
                max_per_host=settings.delivery_max_per_host,
                max_per_tenant=settings.delivery_max_per_tenant,
                attempt_timeout_seconds=settings.delivery_attempt_timeout,
                lease_margin_seconds=settings.delivery_lease_margin_seconds,
                poll_seconds=settings.delivery_poll_seconds,
                escalation_poll_seconds=settings.escalation_poll_seconds,
            ),
            observe=self.metrics.observe_attempt if self.metrics else None,
            sample=self._sample_deliveries if self.metrics else None,
            escalate=self._escalate,
        )
        self.deliveries.wake = worker.wake
        self.targets.resumed = worker.wake
        self.exceptions.deliveries_recorded = worker.wake
        self.hooks.deliveries_recorded = worker.wake
        self.worker = worker
        worker.start()
        return worker

    def _escalate(self) -> int:
        count = self.dispatch.escalate_overdue(self.settings.escalation_batch)
        if self.metrics is not None and count:
            self.metrics.escalations.inc(count)
        return count

    def _sample_deliveries(self, by_state: dict[str, int], oldest_due_seconds: float, running: int) -> None:
        assert self.metrics is not None
        self.metrics.sample_deliveries(
            by_state, oldest_due_seconds, running, self.dispatch.wait_slots.waiting()
        )
        # Same cadence, one more short read: a bounded seek of the escalation index per tenant
        # with an escalation target (docs/routing.md).
        self.metrics.sample_escalation_backlog(
            self.dispatch.escalation_backlog(self.settings.escalation_backlog_cap)
        )

    def stop_delivery_worker(self, grace: float) -> None:
        if self.worker is not None:
            self.worker.stop(grace)
            self.worker = None

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
        servicers.add(
            DeliveriesServicer(self.deliveries), deliveries_pb2_grpc.add_DeliveriesServiceServicer_to_server
        )
        servicers.add(MetaServicer(read_openapi_document()), meta_pb2_grpc.add_MetaServiceServicer_to_server)
        servicers.add(HooksServicer(self.hooks), hooks_pb2_grpc.add_HooksServiceServicer_to_server)
        servicers.add(
            RoutingRulesServicer(self.routing), routing_pb2_grpc.add_RoutingRulesServiceServicer_to_server
        )
        sla = SlaPolicyServicer(SlaService(self.uow))
        servicers.add(sla, routing_pb2_grpc.add_SlaPolicyServiceServicer_to_server)
        bulk = BulkServicer(self._bulk_runner())
        servicers.add(bulk, bulk_pb2_grpc.add_BulkServiceServicer_to_server)
        # /v1/bulk calls every other servicer through this same interceptor chain, in process.
        bulk.runner.bind(in_process_handlers(servicers, self.interceptors(), self.methods))
        return servicers

    def _bulk_runner(self) -> BulkRunner:
        limits = BulkLimits(
            self.settings.bulk_max_requests,
            self.settings.bulk_time_budget_seconds,
            self.settings.bulk_max_response_bytes,
            # The server's send limit (server/rpc/server.py): four times the receive limit.
            4 * self.settings.max_body_bytes,
        )
        observe = self.metrics.observe_subrequest if self.metrics else None
        return BulkRunner(RouteTable(self.methods), limits, savepoint_per_request(self.uow), observe=observe)

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        """Outermost first: request id + access log, errors, request guard, auth, rate limit (idempotency
        last)."""
        return [
            RequestIdInterceptor(self.methods, self.metrics.observe_call if self.metrics else None),
            ErrorInterceptor(translate_db_error),
            RequestGuardInterceptor(),  # invalid UTF-8, NUL characters: 400 (docs/hardening.md)
            AuthInterceptor(self.methods, self.tokens.authenticate, self.hooks.authenticate),
            RateLimitInterceptor(self.methods, self.rate_limiter.check),
            IdempotencyInterceptor(self.methods, self.idempotency),
        ]

    def close(self) -> None:
        self.stop_delivery_worker(0)
        self.connectors.close()
        self.engine.dispose()


def build_app(settings: Settings, metrics_registry: CollectorRegistry | None = None) -> App:
    """metrics_registry: where this process's metrics go (None: no metrics, e.g. CLI commands)."""
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    uow = SqlUnitOfWorkFactory(engine)
    targets, connectors = _dispatch_parts(settings, uow)
    deliveries = DeliveryService(uow)
    methods = load_methods()
    metrics = None
    if metrics_registry is not None:
        pool = engine.pool
        # make_engine's pools are QueuePools (it sets pool_size); no other pool counts checkouts.
        checked_out = pool.checkedout if isinstance(pool, QueuePool) else (lambda: 0)
        hook_rpcs = {name: info.signed_hook for name, info in methods.items() if info.signed_hook}
        gate = write_gate(engine)
        metrics = Metrics(
            metrics_registry,
            pool_checked_out=checked_out,
            hook_rpcs=hook_rpcs,
            writers_waiting=(lambda: gate.waiting) if gate else (lambda: 0),
        )
        if gate is not None:
            gate.observe = metrics.observe_write_wait
        count_statements(engine, metrics.observe_statement)
    cache_observer = metrics.observe_rules_cache if metrics else None
    routing = RoutingService(uow, RulesCache(settings.routing_cache_tenants, observe=cache_observer))
    dispatch = DispatchService(
        uow,
        targets,
        connectors,
        deliveries,
        wait_seconds=settings.dispatch_wait_seconds,
        wait_slots=WaitSlots(settings.dispatch_wait_max_calls, settings.dispatch_wait_max_calls_per_tenant),
        observe=metrics.observe_dispatch if metrics else None,
        rules=routing.cache,
    )
    return App(
        settings=settings,
        engine=engine,
        methods=methods,
        idempotency=SqlIdempotencyStore(
            uow,
            Policy.of_seconds(settings.idempotency_ttl_seconds, settings.idempotency_lock_timeout_seconds),
        ),
        tokens=TokenService(uow, cache=PrincipalCache(settings.auth_cache_seconds)),
        exceptions=ExceptionService(uow, auto_dispatch=dispatch),
        dispatch=dispatch,
        deliveries=deliveries,
        targets=targets,
        connectors=connectors,
        rate_limiter=RateLimiter(
            SqlCounterStore(uow),
            {
                "dispatch": settings.rate_limit_dispatch_per_minute,
                "hooks": settings.rate_limit_hooks_per_minute,
            },
        ),
        uow=uow,
        hooks=HookService(
            uow, targets, settings.hook_max_body_bytes, observe=metrics.observe_hook if metrics else None
        ),
        routing=routing,
        metrics=metrics,
    )


def _dispatch_parts(settings: Settings, uow: SqlUnitOfWorkFactory) -> tuple[TargetService, ConnectorRegistry]:
    """Target configuration and the connectors, sharing one SSRF policy (docs/targets.md)."""
    policy = AddressPolicy(allow_private=settings.dispatch_allow_private_networks)
    box = FernetSecretBox(load_keys(settings.target_secrets_key, Path(settings.target_secrets_key_file)))
    connectors = ConnectorRegistry.from_settings(
        policy,
        HttpSettings(settings.dispatch_connect_timeout_seconds, settings.dispatch_read_timeout_seconds),
        # One request per attempt: the delivery workers schedule retries (docs/delivery.md).
        RetryPolicy(max_attempts=1),
        settings.dispatch_breaker_failures,
        settings.dispatch_breaker_reset_seconds,
    )
    overlap = timedelta(hours=settings.webhook_secret_overlap_hours)
    return TargetService(uow, box, policy.check_url, secret_overlap=overlap), connectors


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
        # Dispatches wait for first delivery outcomes; /v1/bulk may hold dispatches.
        waiting_methods=WAITING_METHODS,
        waiting_workers=settings.dispatch_wait_max_calls,
    )
    server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    return server
