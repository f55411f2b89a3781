"""All settings, read once from the environment into one typed object (nothing else reads os.environ)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'reconrouter.db'}"


class SettingsError(ValueError):
    pass


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


@dataclass(frozen=True)
class Settings:
    # Each field's environment variable is its upper-case name; defaults are the documented ones.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    envoy_admin_port: int = 9901
    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int = 10
    grpc_max_workers: int = 16
    # How long a token that authenticated is trusted without a database lookup, per process; a
    # revocation made elsewhere (CLI, another replica) takes effect within this. 0 = every call.
    auth_cache_seconds: float = 5.0
    max_body_bytes: int = 4 * 1024 * 1024
    # Envoy's connection budgets (server/process/envoy.py ConnectionBudget, envoy/README.md "Budgets").
    envoy_max_connections: int = 4096
    envoy_request_headers_timeout_seconds: float = 10.0
    envoy_idle_timeout_seconds: float = 60.0
    envoy_upstream_idle_timeout_seconds: float = 5.0
    envoy_max_streams_per_connection: int = 100
    envoy_max_upstream_requests: int = 1024
    # Empty: INFO, but WARNING for `make run`, whose terminal keeps the banner readable.
    log_level: str = ""
    # Where the one-line-per-call access log goes: `stderr`, `off`, or a file path. Empty: stderr
    # for `serve`, var/access.log for `make run` (so a token shown once does not scroll away).
    access_log: str = ""
    dispatch_allow_private_networks: bool = False
    rate_limit_dispatch_per_minute: int = 50
    idempotency_ttl_seconds: int = 24 * 3600
    idempotency_lock_timeout_seconds: int = 60
    shutdown_grace_seconds: float = 10.0
    # After SIGTERM the server answers NOT_SERVING but keeps serving this long, so health-checking
    # proxies (Envoy) stop routing to it before it refuses anything.
    shutdown_drain_seconds: float = 0.0
    # Server processes sharing the gRPC port (SO_REUSEPORT); 0 = one per core.
    workers: int = 0
    # Prometheus exposition on 127.0.0.1 (METRICS_HOST); 0 = off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # POST /v1/bulk (docs/bulk.md): sub-requests per batch, and the time after which sub-requests not
    # yet started answer 504 (below Envoy's 60 s route timeout, so the batch still answers).
    bulk_max_requests: int = 100
    bulk_time_budget_seconds: float = 30.0
    # The answer of one /v1/bulk, budgeted while it is built (docs/bulk.md "Memory budget"); at most
    # MAX_BODY_BYTES, a quarter of gRPC's send limit, so the typed gRPC answer (each element as a
    # Struct and as the message) fits too.
    bulk_max_response_bytes: int = 4 * 1024 * 1024

    # Dispatch to target systems (docs/targets.md). Fernet keys, comma-separated (first encrypts);
    # empty: a key generated once into the key file (make run on a fresh machine).
    target_secrets_key: str = ""
    target_secrets_key_file: str = str(PROJECT_ROOT / "var" / "target_secrets.key")
    dispatch_connect_timeout_seconds: float = 5.0
    dispatch_read_timeout_seconds: float = 15.0
    # Consecutive failed attempts of one tenant's target that open its circuit, and for how long.
    dispatch_breaker_failures: int = 5
    dispatch_breaker_reset_seconds: float = 30.0
    # After POST /v1/targets/WEBHOOK/rotate-secret the old secret still signs this long (API.md §9).
    webhook_secret_overlap_hours: float = 24.0
    # Inbound hooks from JIRA / ServiceNow (API.md §9): the largest body taken (413 above it), and
    # posts per minute per tenant (0 = off).
    hook_max_body_bytes: int = 1024 * 1024
    rate_limit_hooks_per_minute: int = 600

    # Durable delivery (API.md §7, docs/delivery.md). A dispatch call waits this long for its
    # items' first outcomes; at most DISPATCH_WAIT_MAX_CALLS calls wait at once (they run on a pool
    # of that many threads of their own), DISPATCH_WAIT_MAX_CALLS_PER_TENANT of one tenant.
    dispatch_wait_seconds: float = 10.0
    dispatch_wait_max_calls: int = 32
    dispatch_wait_max_calls_per_tenant: int = 8
    # Workers in every server process (false: run `python -m server deliver` instead).
    delivery_workers_in_server: bool = True
    # Attempts at once per process, per target host, per tenant.
    delivery_concurrency: int = 16
    delivery_max_per_host: int = 8
    delivery_max_per_tenant: int = 8
    # One attempt's total deadline: connect, TLS, send and the whole answer.
    delivery_attempt_timeout: float = 30.0
    # A lease outlives the deadline by this much before another worker may take the delivery over.
    delivery_lease_margin_seconds: float = 30.0
    # How often idle workers look for due deliveries (others' dispatches, retries, expired leases).
    delivery_poll_seconds: float = 1.0
    # Full-jitter exponential backoff: waits from [0, base * 2^(n-1)], capped; FAILED after the horizon.
    delivery_retry_base_seconds: float = 5.0
    delivery_retry_max_wait_seconds: float = 3600.0
    delivery_retry_horizon: float = 24 * 3600.0

    # Routing rules (API.md §8, docs/routing.md): tenants whose rules each process keeps in memory.
    routing_cache_tenants: int = 1000
    # How often each process's delivery scheduler escalates overdue exceptions (0: never), and how
    # many per tenant per round.
    escalation_poll_seconds: float = 30.0
    escalation_batch: int = 100
    # The escalation backlog metric counts at most this many exceptions per tenant (a bounded walk
    # of the partial index each time the delivery queue is sampled).
    escalation_backlog_cap: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        # Keyword arguments for cls: each value has its field's type (the f.type tests below).
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                elif f.type == "bool":
                    values[f.name] = _bool(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise SettingsError(f"{f.name.upper()}: {exc}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def validate(self) -> None:
        for name in ("grpc_port", "http_port", "envoy_admin_port"):
            if not 0 < getattr(self, name) < 65536:
                raise SettingsError(f"{name.upper()} must be a TCP port")
        if not 0 <= self.metrics_port < 65536:
            raise SettingsError("METRICS_PORT must be a TCP port, or 0 for off")
        if self.workers < 0:
            raise SettingsError("WORKERS must be 0 (one per core) or more")
        if self.max_body_bytes < 1024:
            raise SettingsError("MAX_BODY_BYTES must be at least 1024")
        counts = ("envoy_max_connections", "envoy_max_streams_per_connection", "envoy_max_upstream_requests")
        for name in counts:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be at least 1")
        for name in (
            "envoy_request_headers_timeout_seconds",
            "envoy_idle_timeout_seconds",
            "envoy_upstream_idle_timeout_seconds",
        ):
            if not getattr(self, name) >= 0.001:
                raise SettingsError(f"{name.upper()} must be at least 0.001 (0 would mean no limit)")
        if not 1024 <= self.bulk_max_response_bytes <= self.max_body_bytes:
            raise SettingsError("BULK_MAX_RESPONSE_BYTES must be from 1024 to MAX_BODY_BYTES")
        if self.bulk_max_requests < 1 or not self.bulk_time_budget_seconds > 0:
            raise SettingsError("BULK_MAX_REQUESTS must be at least 1 and BULK_TIME_BUDGET_SECONDS above 0")
        if self.dispatch_breaker_failures < 1:
            raise SettingsError("DISPATCH_BREAKER_FAILURES must be at least 1")
        for name in (
            "dispatch_wait_max_calls",
            "dispatch_wait_max_calls_per_tenant",
            "delivery_concurrency",
            "delivery_max_per_host",
            "delivery_max_per_tenant",
            "routing_cache_tenants",
            "escalation_batch",
            "escalation_backlog_cap",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name.upper()} must be at least 1")
        for name in ("delivery_attempt_timeout", "delivery_poll_seconds", "delivery_retry_horizon"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name.upper()} must be above 0")
        if self.dispatch_wait_seconds < 0 or self.delivery_retry_base_seconds < 0:
            raise SettingsError("DISPATCH_WAIT_SECONDS and DELIVERY_RETRY_BASE_SECONDS must be 0 or more")
        if self.escalation_poll_seconds < 0:
            raise SettingsError("ESCALATION_POLL_SECONDS must be 0 (off) or more")
        if self.auth_cache_seconds < 0:
            raise SettingsError("AUTH_CACHE_SECONDS must be 0 (off) or more")
        if self.rate_limit_dispatch_per_minute < 0:
            raise SettingsError("RATE_LIMIT_DISPATCH_PER_MINUTE must be 0 (off) or more")
        if self.hook_max_body_bytes < 1 or self.rate_limit_hooks_per_minute < 0:
            raise SettingsError("HOOK_MAX_BODY_BYTES must be above 0, RATE_LIMIT_HOOKS_PER_MINUTE 0 or more")
        if self.webhook_secret_overlap_hours < 0:
            raise SettingsError("WEBHOOK_SECRET_OVERLAP_HOURS must be 0 or more")
