"""`make run`: one foreground process with the gRPC server and Envoy; Ctrl-C stops both."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from server.config import PROJECT_ROOT, Settings
from server.domain.auth import SCOPES

if TYPE_CHECKING:
    from server.process.envoy import ConnectionBudget

log = logging.getLogger("reconrouter")


def _first_token(settings: Settings) -> str | None:
    """On an empty database, a token for tenant `default` with every scope (shown once)."""
    from server.bootstrap import build_app

    app = build_app(settings)
    try:
        if app.tokens.count() > 0:
            return None
        return app.tokens.create("default", list(SCOPES), "created by make run")[1]
    finally:
        app.close()


def _banner(settings: Settings, token: str | None) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    shown = token or "<token>"
    lines = [
        "",
        f"REST (through Envoy): {base}    gRPC: {settings.grpc_host}:{settings.grpc_port}",
        f"Token for tenant 'default' (shown once): {token}"
        if token
        else "Tokens exist already; another: .venv/bin/python -m server tokens create --tenant default",
        "Try:",
        f"  curl -s {base}/healthz",
        f"  curl -s -X POST {base}/v1/exceptions -H 'Authorization: Bearer {shown}' "
        "-H 'Content-Type: application/json' "
        """-d '{"transaction_id": "txn-1", "amount": "1250.00", "currency": "USD"}'""",
        f"  curl -s '{base}/v1/exceptions?limit=5' -H 'Authorization: Bearer {shown}'",
        "Ctrl-C stops the server and Envoy.",
        "",
    ]
    return "\n".join(lines)


def envoy_budget(settings: Settings) -> ConnectionBudget:
    from server.process.envoy import ConnectionBudget

    return ConnectionBudget(
        max_connections=settings.envoy_max_connections,
        request_headers_timeout_seconds=settings.envoy_request_headers_timeout_seconds,
        downstream_idle_timeout_seconds=settings.envoy_idle_timeout_seconds,
        upstream_idle_timeout_seconds=settings.envoy_upstream_idle_timeout_seconds,
        max_streams_per_connection=settings.envoy_max_streams_per_connection,
        max_upstream_requests=settings.envoy_max_upstream_requests,
    )


def run(settings: Settings, migrate: Callable[[Settings], None], serve: Callable[..., None]) -> None:
    from server.contract.artifacts import DESCRIPTOR_SET
    from server.contract.methods import service_names
    from server.process.envoy import render_config, start_envoy, wait_until_ready

    migrate(settings)
    token = _first_token(settings)
    run_dir = PROJECT_ROOT / "var"
    run_dir.mkdir(exist_ok=True)
    config = render_config(
        http_host=settings.http_host,
        http_port=settings.http_port,
        grpc_host=settings.grpc_host,
        grpc_port=settings.grpc_port,
        admin_port=settings.envoy_admin_port,
        descriptor_path=DESCRIPTOR_SET,
        services=service_names(),
        max_body_bytes=settings.max_body_bytes,
        budget=envoy_budget(settings),
        out_path=run_dir / "envoy.yaml",
    )
    envoy = start_envoy(config, log_path=run_dir / "envoy.log")
    stop = threading.Event()
    try:
        wait_until_ready(settings.envoy_admin_port, timeout=15)
        serve(settings, stop, on_ready=lambda: print(_banner(settings, token), file=sys.stderr, flush=True))
    finally:
        envoy.terminate()
        try:
            envoy.wait(timeout=5)
        except Exception:
            envoy.kill()


def _ensure_postgres_database(url: str) -> None:
    """`make cluster` on a fresh machine: create the database the URL names if it is missing."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if not target.drivername.startswith("postgresql"):
        return
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
            )
            if exists.first() is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
                log.info("created database", extra={"database": target.database})
    finally:
        admin.dispose()


def run_cluster(settings: Settings, replicas: int, migrate: Callable[[Settings], None]) -> None:
    """`make cluster`: several replicas (one process each) on one database behind one Envoy."""
    import os
    import signal
    import subprocess

    from server.contract.methods import service_names
    from server.process.envoy import render_config, start_envoy, wait_until_ready

    _ensure_postgres_database(settings.database_url)
    migrate(settings)
    token = _first_token(settings)
    run_dir = PROJECT_ROOT / "var"
    run_dir.mkdir(exist_ok=True)
    ports = [settings.grpc_port + i for i in range(replicas)]
    processes = []
    for index, port in enumerate(ports):
        env = dict(
            os.environ,
            GRPC_PORT=str(port),
            WORKERS="1",
            SHUTDOWN_DRAIN_SECONDS="2",
            METRICS_PORT=str(settings.metrics_port + index) if settings.metrics_port else "0",
        )
        processes.append(subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env))
    config = render_config(
        http_host=settings.http_host,
        http_port=settings.http_port,
        upstreams=[(settings.grpc_host, port) for port in ports],
        admin_port=settings.envoy_admin_port,
        services=service_names(),
        max_body_bytes=settings.max_body_bytes,
        budget=envoy_budget(settings),
        out_path=run_dir / "envoy-cluster.yaml",
    )
    envoy = start_envoy(config, log_path=run_dir / "envoy-cluster.log")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        wait_until_ready(settings.envoy_admin_port, timeout=15)
        print(_banner(settings, token), file=sys.stderr, flush=True)
        print(
            f"Replicas on gRPC ports {ports}; Envoy admin on 127.0.0.1:{settings.envoy_admin_port}",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in processes):
                log.error("a replica exited; stopping the cluster")
                break
    finally:
        for process in [*processes, envoy]:
            if process.poll() is None:
                process.terminate()
        for process in [*processes, envoy]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
