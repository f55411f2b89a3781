"""CLI: `python -m server serve | run | migrate | tokens create | tokens revoke`.

Tokens print alone on stdout (scripts capture them); every message goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable

from server.config import Settings, SettingsError
from server.domain.auth import SCOPES
from server.domain.errors import DomainError

log = logging.getLogger("reconrouter")


def _serve(
    settings: Settings, stop: threading.Event | None = None, on_ready: Callable[[], None] | None = None
) -> None:
    from server.bootstrap import build_app, build_grpc_server

    app = build_app(settings)
    server, grpc_health = build_grpc_server(app)
    server.start()
    log.info("gRPC server listening", extra={"address": f"{settings.grpc_host}:{settings.grpc_port}"})
    if on_ready is not None:
        on_ready()
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # Report NOT_SERVING first (every service) so health-checking proxies stop sending new calls,
    # then let in-flight calls finish within the grace period.
    grpc_health.enter_graceful_shutdown()
    log.info("shutting down", extra={"grace_seconds": settings.shutdown_grace_seconds})
    server.stop(settings.shutdown_grace_seconds).wait()
    app.close()


def _migrate(settings: Settings) -> None:
    from server.storage.migrate import upgrade

    upgrade(settings.database_url)
    log.info("database migrated")


def _tokens(settings: Settings, args: argparse.Namespace) -> None:
    from server.bootstrap import build_app

    app = build_app(settings)
    try:
        if args.tokens_command == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            token_id, token = app.tokens.create(args.tenant, scopes, args.name or "")
            print(f"created token {token_id} for tenant {args.tenant}", file=sys.stderr)
            print(token)
        else:
            app.tokens.revoke(args.token_id)
            print(f"revoked token {args.token_id}", file=sys.stderr)
    finally:
        app.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server (settings from the environment)")
    sub.add_parser("run", help="migrate, then run the gRPC server and Envoy together (make run)")
    sub.add_parser("migrate", help="upgrade the database schema to the latest version")
    tokens = sub.add_parser("tokens", help="manage API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token; prints it alone on stdout")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--scopes", default=",".join(SCOPES), help=f"comma-separated, from {', '.join(SCOPES)}"
    )
    create.add_argument("--name", default="")
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    from server.logs import configure

    configure(settings.log_level)
    try:
        if args.command == "serve":
            _serve(settings)
        elif args.command == "migrate":
            _migrate(settings)
        elif args.command == "run":
            from server.local_run import run

            run(settings, _migrate, _serve)
        else:
            _tokens(settings, args)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
