"""Running the gRPC server: one process, or WORKERS processes sharing the port (SO_REUSEPORT).

Workers are forked before any gRPC object or database engine exists (gRPC's core is not fork-safe
once started), each builds its own server and connection pool, and the supervisor only forwards
signals, restarts a worker that died, and serves the metrics of all of them.

Nothing here waits without a deadline once a stop is asked for (Ctrl-C, SIGTERM): a worker that
overruns its budget (drain + twice the grace period + a margin) exits on its own watchdog, and the
supervisor kills any worker still alive after that budget, or at once on a second Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable

from server.config import Settings
from server.process.signals import StopSignals
from server.process.startup import EXIT_STARTUP_FAILED, StartupError, describe_bind_failure, port_in_use

log = logging.getLogger("reconrouter")
RESTART_BACKOFF_SECONDS = 1.0
# Beyond drain + 2 * grace (the server's grace, then the delivery workers'), for closing pools.
SHUTDOWN_MARGIN_SECONDS = 5.0
# After SIGKILL, how long the supervisor waits to reap a worker before it gives up on it.
REAP_SECONDS = 5.0
# A worker that gets a second Ctrl-C exits at once with this code (128 + SIGINT, as shells do).
EXIT_INTERRUPTED = 130


def shutdown_budget(settings: Settings) -> float:
    """The longest a server process may take to stop once asked to."""
    return settings.shutdown_drain_seconds + 2 * settings.shutdown_grace_seconds + SHUTDOWN_MARGIN_SECONDS


def _start_watchdog(seconds: float) -> None:
    """Ends this process if stopping takes longer than `seconds` (a stuck thread, an untimed join)."""

    def overrun() -> None:
        time.sleep(seconds)
        log.error("stopping took longer than its budget; exiting now", extra={"budget_seconds": seconds})
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=overrun, name="shutdown-watchdog", daemon=True).start()


def serve_process(
    settings: Settings,
    signals: StopSignals,
    *,
    shared_port: bool,
    registry=None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """One server process until a stop is requested, then drain and return within the budget."""
    from prometheus_client import CollectorRegistry

    from server.bootstrap import build_app, build_grpc_server

    app = build_app(settings, metrics_registry=registry or CollectorRegistry())
    server = build_grpc_server(app, shared_port=shared_port)
    try:
        server.start()
    except RuntimeError as exc:
        app.close()
        if port_in_use(settings.grpc_host, settings.grpc_port):
            raise StartupError(describe_bind_failure(settings.grpc_host, settings.grpc_port)) from None
        raise StartupError(f"the gRPC server could not start: {exc}") from exc
    if on_started is not None:
        on_started()
    log.info("gRPC server listening", extra={"address": f"{settings.grpc_host}:{settings.grpc_port}"})
    if settings.delivery_workers_in_server:
        app.start_delivery_worker()
    signals.wait()
    _start_watchdog(shutdown_budget(settings))
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
    settings: Settings,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    *,
    signals: StopSignals | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set). Raises StartupError when it cannot start."""
    signals = signals or StopSignals(stop).install()
    if settings.worker_count == 1:
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        _start_metrics_http(settings, registry)
        started = threading.Event()
        threading.Thread(target=_when_started, args=(started, signals, on_ready), daemon=True).start()
        serve_process(settings, signals, shared_port=False, registry=registry, on_started=started.set)
        return
    _supervise(settings, signals, on_ready)


def _when_started(
    started: threading.Event, signals: StopSignals, on_ready: Callable[[], None] | None
) -> None:
    while on_ready is not None and not signals.stop.is_set():
        if started.wait(0.1):
            on_ready()
            return


def _when_listening(settings: Settings, signals: StopSignals, on_ready: Callable[[], None] | None) -> None:
    """Calls on_ready once every worker's gRPC server is up (the supervisor's view: a health check)."""
    import socket

    deadline = time.monotonic() + 60
    while on_ready is not None and time.monotonic() < deadline and not signals.stop.is_set():
        try:
            with socket.create_connection((settings.grpc_host, settings.grpc_port), timeout=0.5):
                on_ready()
                return
        except OSError:
            time.sleep(0.05)


def _fork_worker(settings: Settings, index: int, inherited: StopSignals) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    started = False

    def mark_started() -> None:
        nonlocal started
        started = True

    try:
        signals = StopSignals(hard_exit_code=EXIT_INTERRUPTED).install()
        # A signal that came between fork and install went to the supervisor's handler copied here.
        signals.received += inherited.received
        serve_process(settings, signals, shared_port=True, on_started=mark_started)
    except StartupError as exc:
        log.error(str(exc), extra={"worker": index})
        code = EXIT_STARTUP_FAILED
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1 if started else EXIT_STARTUP_FAILED
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(settings: Settings, signals: StopSignals, on_ready: Callable[[], None] | None) -> None:
    # Metrics of every worker land in files here; set before the workers import prometheus_client.
    metrics_dir = tempfile.mkdtemp(prefix="reconrouter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import CollectorRegistry, multiprocess

    workers: dict[int, int] = {}
    failure: StartupError | None = None
    try:
        for index in range(settings.worker_count):
            if signals.requested():
                return
            workers[_fork_worker(settings, index, signals)] = index
        log.info("workers started", extra={"workers": len(workers), "pids": sorted(workers)})
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)
        _start_metrics_http(settings, registry)
        threading.Thread(target=_when_listening, args=(settings, signals, on_ready), daemon=True).start()
        while workers and not signals.requested():
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                signals.wait(0.2)
                continue
            index = workers.pop(pid, -1)
            multiprocess.mark_process_dead(pid, metrics_dir)
            if os.waitstatus_to_exitcode(status) == EXIT_STARTUP_FAILED:
                failure = StartupError("a server worker could not start (its reason is logged above)")
                break
            if signals.requested():
                break
            log.error("worker died; restarting", extra={"worker": index, "status": status})
            if signals.wait(RESTART_BACKOFF_SECONDS):
                break
            workers[_fork_worker(settings, index, signals)] = index
    finally:
        _stop_workers(workers, shutdown_budget(settings), signals)
        for pid in workers:
            multiprocess.mark_process_dead(pid, metrics_dir)
    if failure is not None:
        raise failure


def _stop_workers(workers: dict[int, int], budget: float, signals: StopSignals) -> None:
    """SIGTERM every worker, reap them; SIGKILL whoever is left after `budget` or a second Ctrl-C."""
    for pid in workers:
        _signal(pid, signal.SIGTERM)
    alive = set(workers)
    deadline = time.monotonic() + budget
    killed_at: float | None = None
    while alive:
        for pid in list(alive):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                alive.discard(pid)
        if not alive:
            return
        now = time.monotonic()
        if killed_at is None and (now >= deadline or signals.hurry()):
            log.error("workers did not stop in time; killing them", extra={"pids": sorted(alive)})
            for pid in alive:
                _signal(pid, signal.SIGKILL)
            killed_at = now
        elif killed_at is not None and now - killed_at > REAP_SECONDS:
            log.error("workers could not be reaped", extra={"pids": sorted(alive)})
            return
        signals.requested()
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
