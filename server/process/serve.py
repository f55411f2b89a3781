"""Running the gRPC server: one process, or WORKERS processes sharing the port (SO_REUSEPORT).

Workers are forked before any gRPC object or database engine exists (gRPC's core is not fork-safe
once started), each builds its own server and connection pool, and the supervisor only forwards
signals, restarts a worker that died, and serves the metrics of all of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable

from server.config import Settings

log = logging.getLogger("reconrouter")
RESTART_BACKOFF_SECONDS = 1.0


def _install_stop_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())


def serve_process(settings: Settings, stop: threading.Event, *, shared_port: bool, registry=None) -> None:
    """One server process until `stop` is set, then drain and exit."""
    from prometheus_client import CollectorRegistry

    from server.bootstrap import build_app, build_grpc_server

    app = build_app(settings, metrics_registry=registry or CollectorRegistry())
    server = build_grpc_server(app, shared_port=shared_port)
    server.start()
    log.info("gRPC server listening", extra={"address": f"{settings.grpc_host}:{settings.grpc_port}"})
    if settings.delivery_workers_in_server:
        app.start_delivery_worker()
    stop.wait()
    # NOT_SERVING first, so health-checking proxies stop routing here; keep serving while they notice;
    # then refuse new calls and give in-flight ones the grace period.
    server.enter_graceful_shutdown()
    log.info(
        "draining",
        extra={
            "drain_seconds": settings.shutdown_drain_seconds,
            "grace_seconds": settings.shutdown_grace_seconds,
        },
    )
    time.sleep(settings.shutdown_drain_seconds)
    server.stop(settings.shutdown_grace_seconds)
    # Attempts under way get the grace period too; those still running then lose their leases,
    # and another worker takes them over (asking the target first: docs/delivery.md).
    app.stop_delivery_worker(settings.shutdown_grace_seconds)
    app.close()
    log.info("stopped")


def _start_metrics_http(settings: Settings, registry) -> None:
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, settings.metrics_host, registry=registry)


def serve(
    settings: Settings, stop: threading.Event | None = None, on_ready: Callable[[], None] | None = None
) -> None:
    stop = stop or threading.Event()
    _install_stop_handlers(stop)
    if settings.worker_count == 1:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        _start_metrics_http(settings, registry)
        threading.Thread(target=_when_listening, args=(settings, on_ready), daemon=True).start()
        serve_process(settings, stop, shared_port=False, registry=registry)
        return
    _supervise(settings, stop, on_ready)


def _when_listening(settings: Settings, on_ready: Callable[[], None] | None, timeout: float = 30) -> None:
    """Calls on_ready once the gRPC port accepts connections (a plain TCP probe: no gRPC objects)."""
    deadline = time.monotonic() + timeout
    while on_ready is not None and time.monotonic() < deadline:
        try:
            with socket.create_connection((settings.grpc_host, settings.grpc_port), timeout=0.5):
                on_ready()
                return
        except OSError:
            time.sleep(0.05)


def _fork_worker(settings: Settings, index: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        stop = threading.Event()
        _install_stop_handlers(stop)
        serve_process(settings, stop, shared_port=True)
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1
    finally:
        os._exit(code)


def _supervise(settings: Settings, stop: threading.Event, on_ready: Callable[[], None] | None) -> None:
    # Metrics of every worker land in files here; set before the workers import prometheus_client.
    metrics_dir = tempfile.mkdtemp(prefix="reconrouter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import CollectorRegistry, multiprocess

    workers = {_fork_worker(settings, i): i for i in range(settings.worker_count)}
    log.info("workers started", extra={"workers": len(workers), "pids": sorted(workers)})
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)
    _start_metrics_http(settings, registry)
    threading.Thread(target=_when_listening, args=(settings, on_ready), daemon=True).start()
    while workers:
        if stop.is_set():
            for pid in workers:
                _signal(pid, signal.SIGTERM)
            for pid in list(workers):
                os.waitpid(pid, 0)
                multiprocess.mark_process_dead(pid, metrics_dir)
            return
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            stop.wait(0.2)
            continue
        index = workers.pop(pid)
        multiprocess.mark_process_dead(pid, metrics_dir)
        if not stop.is_set():
            log.error("worker died; restarting", extra={"worker": index, "status": status})
            time.sleep(RESTART_BACKOFF_SECONDS)
            workers[_fork_worker(settings, index)] = index


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
