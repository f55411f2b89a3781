"""CLI: `python -m server serve | run | migrate | purge | tokens create | tokens revoke`.

Tokens print alone on stdout (scripts capture them); every message goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from server.config import Settings, SettingsError
from server.domain.auth import SCOPES
from server.domain.errors import DomainError

log = logging.getLogger("reconrouter")
# 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


def _interrupted(signum: int, frame: object) -> None:
    """Ctrl-C before a command has its own handling (while importing, migrating): exit quietly,
    unwinding `finally` blocks, instead of a KeyboardInterrupt traceback. `run`, `serve`, `cluster`
    and `deliver` replace this with their stop handling (server/process/signals.py)."""
    raise SystemExit(EXIT_INTERRUPTED)


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


def _purge(settings: Settings) -> None:
    from server.bootstrap import build_app
    from server.services.clock import utc_now

    app = build_app(settings)
    try:
        deleted = app.idempotency.purge(utc_now())
        print(f"purged {deleted} expired idempotency keys", file=sys.stderr)
    finally:
        app.close()


def _deliver(settings: Settings) -> None:
    """Delivery workers alone (docs/delivery.md), until SIGTERM or SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server

    from server.bootstrap import build_app
    from server.process.signals import StopSignals

    # Counts signals only; an Event.set() inside a handler can deadlock a waiting main thread.
    signals = StopSignals().install()
    registry = CollectorRegistry()
    if settings.metrics_port:
        # The delivery metrics of this process (docs/delivery.md); METRICS_PORT=0 for none.
        start_http_server(settings.metrics_port, settings.metrics_host, registry=registry)
    app = build_app(settings, metrics_registry=registry)
    try:
        app.start_delivery_worker()
        signals.wait()
        log.info("stopping delivery workers", extra={"grace_seconds": settings.shutdown_grace_seconds})
        app.stop_delivery_worker(settings.shutdown_grace_seconds)
    finally:
        app.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server (settings from the environment)")
    sub.add_parser("run", help="migrate, then run the gRPC server and Envoy together (make run)")
    cluster = sub.add_parser(
        "cluster", help="migrate, then run REPLICAS servers behind one Envoy (make cluster)"
    )
    cluster.add_argument("--replicas", type=int, default=2)
    sub.add_parser(
        "deliver", help="run delivery workers alone (with DELIVERY_WORKERS_IN_SERVER=false on the servers)"
    )
    sub.add_parser("migrate", help="upgrade the database schema to the latest version")
    sub.add_parser("purge", help="delete expired idempotency keys (run it periodically, e.g. hourly)")
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
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupted)
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    from server.logs import access_log_destination, configure
    from server.process.startup import StartupError

    local_run = args.command == "run"
    level = settings.log_level or ("WARNING" if local_run else "INFO")
    configure(level, access_log_destination(settings, local_run=local_run))
    try:
        if args.command == "serve":
            from server.process.serve import serve

            serve(settings)
        elif args.command == "migrate":
            _migrate(settings)
        elif args.command == "deliver":
            _deliver(settings)
        elif args.command == "purge":
            _purge(settings)
        elif args.command == "run":
            from server.process.local_run import run
            from server.process.serve import serve

            run(settings, _migrate, serve)
        elif args.command == "cluster":
            from server.process.local_run import run_cluster

            run_cluster(settings, args.replicas, _migrate)
        else:
            _tokens(settings, args)
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # As early as this module allows: the imports above take a few milliseconds.
    signal.signal(signal.SIGINT, _interrupted)
    sys.exit(main())
