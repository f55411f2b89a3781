"""`make run`: one foreground process with the gRPC server and Envoy; Ctrl-C stops both."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from server.config import PROJECT_ROOT, Settings
from server.domain.auth import SCOPES

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


def run(settings: Settings, migrate: Callable[[Settings], None], serve: Callable[..., None]) -> None:
    from server.envoy_proxy import render_config, start_envoy, wait_until_ready
    from server.rpc.methods import service_names
    from server.tools.codegen import DESCRIPTOR_SET

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
