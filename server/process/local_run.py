"""`make run`: one foreground process with the gRPC server and Envoy; Ctrl-C stops both."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from server.config import PROJECT_ROOT, Settings
from server.domain.auth import SCOPES
from server.logs import access_log_destination
from server.process.signals import StopSignals
from server.process.startup import StartupError, check_ports_free, ports_to_check

if TYPE_CHECKING:
    from server.process.envoy import ConnectionBudget

log = logging.getLogger("reconrouter")
# Envoy is up in about a second; its exit (a bad config, a port taken) is reported at once anyway.
ENVOY_READY_SECONDS = 30.0


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


def _banner(settings: Settings, token: str | None, access_log: str) -> str:
    base = f"http://{settings.http_host}:{settings.http_port}"
    if token:
        token_lines = [
            "A token for tenant 'default' (shown only now; copy it):",
            f"  export TOKEN={token}",
        ]
    else:
        token_lines = [
            "Tokens exist already (each is shown only once). For the curls below, create one:",
            "  export TOKEN=$(.venv/bin/python -m server tokens create --tenant default)",
        ]
    lines = [
        "",
        "reconrouter is running",
        f"  REST (through Envoy)  {base}      API reference  {base}/docs",
        f"  gRPC                  {settings.grpc_host}:{settings.grpc_port}",
        f"  access log            {access_log}",
        "",
        *token_lines,
        "",
        "Try:",
        f"  curl -s {base}/healthz",
        f"  curl -s -X POST {base}/v1/exceptions \\",
        "       -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\",
        """       -d '{"transaction_id": "txn-1", "amount": "1250.00", "currency": "USD"}'""",
        f"  curl -s '{base}/v1/exceptions?limit=5' -H \"Authorization: Bearer $TOKEN\"",
        "",
        "Ctrl-C stops the server and Envoy.",
        "",
    ]
    return "\n".join(lines)


def _envoy_failure(log_path: Path, offset: int) -> str:
    """The reason Envoy gave for exiting, from what it wrote to its log since `offset`."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode("utf-8", "replace")
    except OSError:
        return "no log"
    # Envoy's lines look like `[time][pid][critical][main] [file:line] error initializing ...: why`.
    reasons = [line for line in text.splitlines() if "[critical]" in line or "[error]" in line]
    if not reasons:
        reasons = [line for line in text.splitlines() if line.strip()][-1:]
    if not reasons:
        return "no output"
    return reasons[-1].rsplit("] ", 1)[-1].strip()


def wait_for_envoy(
    envoy: subprocess.Popen[bytes], admin_port: int, log_path: Path, offset: int, signals: StopSignals
) -> bool:
    """True once Envoy is ready; False when a stop was requested; StartupError when it exited."""
    from server.process.envoy import wait_until_ready

    deadline = time.monotonic() + ENVOY_READY_SECONDS
    while not signals.requested():
        if envoy.poll() is not None:
            raise StartupError(
                f"Envoy exited with code {envoy.returncode}: {_envoy_failure(log_path, offset)} "
                f"(full log: {log_path})"
            )
        try:
            wait_until_ready(admin_port, timeout=0.2, process=envoy)
            return True
        except (TimeoutError, RuntimeError):
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"Envoy was not ready after {ENVOY_READY_SECONDS:.0f} s (its log: {log_path})")
    return False


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; never waits without a deadline."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


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
    """Raises StartupError (one line for the operator) when something is in the way."""
    from server.contract.artifacts import DESCRIPTOR_SET
    from server.contract.methods import service_names
    from server.process.envoy import render_config, start_envoy

    # First, so that a Ctrl-C at any point below is a stop request, not a traceback.
    signals = StopSignals().install()
    check_ports_free(ports_to_check(settings, envoy=True))
    migrate(settings)
    if signals.requested():
        return
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
    log_path = run_dir / "envoy.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    envoy = start_envoy(config, log_path=log_path)
    try:
        if not wait_for_envoy(envoy, settings.envoy_admin_port, log_path, offset, signals):
            return

        def ready() -> None:
            # Created only now that everything listens, so it is never made and then lost unseen.
            token = _first_token(settings)
            print(_banner(settings, token, access_log_destination(settings)), file=sys.stderr, flush=True)

        serve(settings, on_ready=ready, signals=signals)
    finally:
        stop_process(envoy)


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

    from server.contract.methods import service_names
    from server.process.envoy import render_config, start_envoy

    signals = StopSignals().install()
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
    log_path = run_dir / "envoy-cluster.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    envoy = start_envoy(config, log_path=log_path)
    try:
        if not wait_for_envoy(envoy, settings.envoy_admin_port, log_path, offset, signals):
            return
        print(_banner(settings, token, access_log_destination(settings)), file=sys.stderr, flush=True)
        print(
            f"Replicas on gRPC ports {ports}; Envoy admin on 127.0.0.1:{settings.envoy_admin_port}",
            file=sys.stderr,
            flush=True,
        )
        while not signals.wait(0.5):
            if any(p.poll() is not None for p in processes):
                log.error("a replica exited; stopping the cluster")
                break
    finally:
        for process in [*processes, envoy]:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 15
        for process in [*processes, envoy]:
            stop_process(process, grace=max(0.1, deadline - time.monotonic()))
