"""Prometheus metrics. One Metrics object per process; with WORKERS > 1 the values go to files in
PROMETHEUS_MULTIPROC_DIR and the supervisor serves their sum (prometheus_client multiprocess mode)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from server.contract.http import IDEMPOTENCY_REPLAYED
from server.domain.delivery import DeliveryState

# Latency buckets in seconds, from a cached read to a slow bulk dispatch.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RATE_LIMITED = "RATE_LIMITED"  # the reason of a rate limit refusal (server/domain/errors.py)
_IDEMPOTENCY_REASONS = {
    "IDEMPOTENCY_KEY_IN_USE": "in_use",
    "IDEMPOTENCY_KEY_REUSED": "reused",
    "INVALID_IDEMPOTENCY_KEY": "invalid",
}


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        pool_checked_out: Callable[[], int] = lambda: 0,
        hook_rpcs: Mapping[str, str] | None = None,
        writers_waiting: Callable[[], int] = lambda: 0,
    ) -> None:
        """hook_rpcs: the signed-hook RPCs (full method name) and the system each receives, so that a
        hook post the rate limit refused is counted with the others."""
        self.registry = registry
        self._pool_checked_out = pool_checked_out
        self._writers_waiting = writers_waiting
        self._hook_rpcs = dict(hook_rpcs or {})
        self._calls_by_outcome: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._cache_events: dict[str, Counter] = {}
        self.calls = Counter(
            "reconrouter_rpc_calls",
            "Finished calls by RPC and outcome code",
            ["rpc", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "reconrouter_rpc_duration_seconds", "Call latency", ["rpc"], buckets=_BUCKETS, registry=registry
        )
        self.idempotency = Counter(
            "reconrouter_idempotency",
            "Idempotent calls by outcome (executed, replayed, in_use, reused, invalid)",
            ["outcome"],
            registry=registry,
        )
        self.dispatch_items = Counter(
            "reconrouter_dispatch_items",
            "Dispatched exceptions by target system and outcome",
            ["target", "outcome"],
            registry=registry,
        )
        # Overdue exceptions sent to their tenant's SLA escalation target (API.md §8).
        self.escalations = Counter(
            "reconrouter_escalations",
            "Overdue exceptions escalated by the delivery scheduler",
            registry=registry,
        )
        # Unresolved exceptions past due and not yet escalated, of the tenants whose SLA policy names
        # an escalation target: what the next escalation rounds will send (sampled from the database).
        self.escalation_backlog = Gauge(
            "reconrouter_escalation_backlog",
            "Overdue, unresolved, unescalated exceptions of tenants with an escalation target (sampled)",
            registry=registry,
            multiprocess_mode="max",
        )
        # The per-process routing rules cache (docs/routing.md).
        self.routing_cache = Counter(
            "reconrouter_routing_rules_cache",
            "Routing rules cache events: hit (generation unchanged), miss (not held), reload (the "
            "generation moved), eviction (least recently used tenant dropped)",
            ["event"],
            registry=registry,
        )
        # Inbound hooks (docs/integrations.md): every post that reaches the server, by outcome.
        self.hook_posts = Counter(
            "reconrouter_hook_posts",
            "Inbound hook posts by system and outcome (receipt status or refusal)",
            ["system", "outcome"],
            registry=registry,
        )
        self.bulk_subrequests = Counter(
            "reconrouter_bulk_subrequests",
            "Sub-requests of /v1/bulk by HTTP status class",
            ["status"],
            registry=registry,
        )
        # Statements per call tell an N+1 at a glance (the bench reports them per request).
        self.db_statements = Counter(
            "reconrouter_db_statements",
            "Statements sent to the database (an executemany counts once)",
            registry=registry,
        )
        self.db_pool_checked_out = Gauge(
            "reconrouter_db_pool_checked_out",
            "Database connections in use (sampled at the end of each call)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # SQLite: this process's writers queue for the database in arrival order (storage/write_gate.py).
        self.db_writers_waiting = Gauge(
            "reconrouter_db_writers_waiting",
            "SQLite: write transactions of this process queued for the database (sampled after each call)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_write_wait = Histogram(
            "reconrouter_db_write_wait_seconds",
            "SQLite: how long a write transaction waited for this process's other writers before BEGIN",
            buckets=_BUCKETS,
            registry=registry,
        )

        # Durable delivery (docs/delivery.md): the queue, the workers and the waiting dispatch calls.
        self.delivery_attempts = Counter(
            "reconrouter_delivery_attempts",
            "Delivery attempts by target system, kind (dispatch, escalation, resolution) and outcome",
            ["target", "kind", "outcome"],
            registry=registry,
        )
        self.delivery_attempt_seconds = Histogram(
            "reconrouter_delivery_attempt_duration_seconds",
            "Delivery attempt latency (the whole attempt, its deadline included)",
            ["target"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.deliveries = Gauge(
            "reconrouter_deliveries",
            "Deliveries by state (sampled by the workers from the database, shared by replicas)",
            ["state"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.delivery_oldest_due_seconds = Gauge(
            "reconrouter_delivery_oldest_due_age_seconds",
            "How long the oldest due PENDING delivery has waited (0: none due)",
            registry=registry,
            multiprocess_mode="max",
        )
        self.delivery_attempts_running = Gauge(
            "reconrouter_delivery_attempts_running",
            "Attempts running now (all worker processes)",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.dispatch_calls_waiting = Gauge(
            "reconrouter_dispatch_calls_waiting",
            "Dispatch calls waiting for first delivery outcomes (all processes)",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def observe_attempt(self, target: str, kind: str, outcome: str, seconds: float) -> None:
        self.delivery_attempts.labels(target, kind, outcome).inc()
        self.delivery_attempt_seconds.labels(target).observe(seconds)

    def sample_deliveries(
        self, by_state: dict[str, int], oldest_due_seconds: float, running: int, waiting: int
    ) -> None:
        for state in DeliveryState:
            self.deliveries.labels(state.value).set(by_state.get(state.value, 0))
        self.delivery_oldest_due_seconds.set(oldest_due_seconds)
        self.delivery_attempts_running.set(running)
        self.dispatch_calls_waiting.set(waiting)

    def sample_escalation_backlog(self, count: int) -> None:
        self.escalation_backlog.set(count)

    def observe_rules_cache(self, event: str) -> None:
        # On every routed call: the children are looked up once (labels() checks its arguments).
        child = self._cache_events.get(event)
        if child is None:
            child = self._cache_events[event] = self.routing_cache.labels(event)
        child.inc()

    def observe_hook(self, system: str, outcome: str) -> None:
        self.hook_posts.labels(system, outcome).inc()

    def observe_statement(self) -> None:
        self.db_statements.inc()

    def observe_subrequest(self, status: int) -> None:
        self.bulk_subrequests.labels(f"{status // 100}xx").inc()

    def observe_dispatch(self, target: str, outcome: str) -> None:
        self.dispatch_items.labels(target, outcome).inc()

    def observe_call(self, rpc: str, code: str, reason: str, seconds: float, headers: dict[str, str]) -> None:
        calls = self._calls_by_outcome.get((rpc, code))
        if calls is None:
            # labels() parses and checks its arguments on every call; the children never change.
            name = rpc.rsplit("/", 1)[-1]
            calls = (self.calls.labels(name, code), self.latency.labels(name))
            self._calls_by_outcome[rpc, code] = calls
        calls[0].inc()
        calls[1].observe(seconds)
        replayed = headers.get(IDEMPOTENCY_REPLAYED)
        if replayed is not None:
            self.idempotency.labels("replayed" if replayed == "true" else "executed").inc()
        elif reason in _IDEMPOTENCY_REASONS:
            self.idempotency.labels(_IDEMPOTENCY_REASONS[reason]).inc()
        if reason == _RATE_LIMITED and rpc in self._hook_rpcs:
            # Refused by the rate limit interceptor after the signature held: the service never saw it.
            self.observe_hook(self._hook_rpcs[rpc], _RATE_LIMITED)
        self.db_pool_checked_out.set(self._pool_checked_out())
        self.db_writers_waiting.set(self._writers_waiting())

    def observe_write_wait(self, seconds: float) -> None:
        self.db_write_wait.observe(seconds)
