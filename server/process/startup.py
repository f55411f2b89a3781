"""What must hold before anything starts: every port free. One clear line when it does not."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from server.config import Settings


class StartupError(RuntimeError):
    """The process cannot start as configured; the message is the one line the operator sees."""


# Exit code of a worker process that could not start (e.g. its port is taken): the supervisor
# stops instead of restarting it every second forever.
EXIT_STARTUP_FAILED = 3


def port_in_use(host: str, port: int) -> bool:
    """True when a listening socket can not be made on host:port right now.

    SO_REUSEADDR lets the probe ignore connections lingering in TIME_WAIT from a previous run; a
    socket listening there (ours with SO_REUSEPORT included, since the probe does not set it) still
    makes bind fail.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError:
            return True
    return False


def ports_to_check(settings: Settings, *, envoy: bool) -> list[tuple[str, str, int]]:
    """(setting, host, port) for every port the stack will listen on."""
    ports = [("GRPC_PORT", settings.grpc_host, settings.grpc_port)]
    if envoy:
        ports += [
            ("HTTP_PORT", settings.http_host, settings.http_port),
            ("ENVOY_ADMIN_PORT", "127.0.0.1", settings.envoy_admin_port),
        ]
    if settings.metrics_port:
        ports.append(("METRICS_PORT", settings.metrics_host, settings.metrics_port))
    return ports


def check_ports_free(ports: Iterable[tuple[str, str, int]]) -> None:
    """Raise StartupError naming each taken port and the setting that chooses it."""
    taken = []
    seen: set[int] = set()
    for setting, host, port in ports:
        if port in seen:
            raise StartupError(f"port {port} is configured twice ({setting} repeats another setting)")
        seen.add(port)
        if port_in_use(host, port):
            taken.append(
                f"port {port} on {host} is already in use ({setting}): stop what holds it, "
                f"or set {setting} to a free port"
            )
    if taken:
        raise StartupError("\n".join(taken))


def describe_bind_failure(host: str, port: int) -> str:
    return (
        f"port {port} on {host} is already in use (GRPC_PORT): stop what holds it, "
        "or set GRPC_PORT to a free port"
    )
