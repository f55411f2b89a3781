"""End-to-end harness: the real server CLI and a real Envoy, on free loopback ports.

    with Stack(f"sqlite:///{tmp_path}/e2e.db", {"LOG_LEVEL": "DEBUG"}, work_dir=tmp_path) as s:
        token = s.create_token("acme", ["exceptions:read", "exceptions:write"])
        httpx.get(f"{s.base_url}/v1/exceptions", headers={"Authorization": f"Bearer {token}"})

Everything runs as subprocesses of `python -m server` exactly as an operator would run it, so the
tests see what callers see: environment-variable configuration, migrations, the CLI, REST through
Envoy, and gRPC straight to the server (`grpc_target`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.process import envoy as envoy_proxy

ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 5.0
# A port picked by free_port() can be taken by someone else before the child binds it; a child that
# exits before it is ready is retried on fresh ports this many times.
START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after a grace period: the server gets to drain and close the database."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_GRACE_SECONDS)


class Stack:
    """One gRPC server process plus one Envoy in front of it. Usable as a context manager."""

    # `python -m <server_module>`; a test of the harness itself can point it at a stand-in.
    server_module = "server"

    def __init__(
        self,
        database_url: str,
        env: Mapping[str, str] | None = None,
        *,
        work_dir: Path | None = None,
        max_body_bytes: int = envoy_proxy.DEFAULT_MAX_BODY_BYTES,
        route_timeout_seconds: float = envoy_proxy.DEFAULT_ROUTE_TIMEOUT_SECONDS,
        budget: envoy_proxy.ConnectionBudget | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.budget = budget
        self.database_url = database_url
        self.extra_env = dict(env or {})
        self.max_body_bytes = max_body_bytes
        self.route_timeout_seconds = route_timeout_seconds
        self.start_timeout = start_timeout
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="reconrouter-e2e-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.server_log_path = self.work_dir / "server.log"
        self.envoy_log_path = self.work_dir / "envoy.log"
        self.grpc_port = 0
        self.http_port = 0
        self.admin_port = 0
        self.metrics_port = 0
        self.server_process: subprocess.Popen | None = None
        self.envoy_process: subprocess.Popen | None = None
        self._server_log: IO[bytes] | None = None
        self._saved_logs: dict[Path, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Stack:
        try:
            # All ports up front, so every subprocess sees the same GRPC_PORT and HTTP_PORT.
            self.grpc_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
            self.metrics_port = free_port()
            self.migrate()
            self.start_server()
            self.start_envoy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop Envoy and the server. Safe to call twice; logs() keeps working afterwards."""
        _stop(self.envoy_process)
        self.stop_server()
        if self._own_work_dir and self.work_dir.exists():
            for path in (self.server_log_path, self.envoy_log_path):
                self._saved_logs[path] = self._read(path)
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- pieces (public so a test can stop the server and watch Envoy answer 503) ------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment every server subprocess (serve, migrate, tokens) gets."""
        env = dict(os.environ)
        env.update(
            {
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": str(self.grpc_port),
                "HTTP_PORT": str(self.http_port),
                "DATABASE_URL": self.database_url,
                "DISPATCH_ALLOW_PRIVATE_NETWORKS": "true",
                "LOG_LEVEL": "INFO",
                "METRICS_PORT": str(self.metrics_port),
                # One process unless a test asks for more (env={"WORKERS": "2"}).
                "WORKERS": "1",
                # Tests dispatch far more than 50 times a minute; rate-limit tests turn it back on.
                "RATE_LIMIT_DISPATCH_PER_MINUTE": "0",
                # Durable delivery (docs/delivery.md), quick: retries within a second or so, idle
                # workers look every 0.2 s, and a dispatch waits up to 5 s for a first outcome (long
                # enough for a healthy loopback stand-in's first attempt, short for scheduled ones).
                "DELIVERY_RETRY_BASE_SECONDS": "0.2",
                "DELIVERY_POLL_SECONDS": "0.2",
                "DISPATCH_WAIT_SECONDS": "5",
                # Log lines reach the file as they happen, not when a buffer fills.
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `python -m server ARGS` against this stack's database; raise with stderr on failure."""
        result = subprocess.run(
            [sys.executable, "-m", self.server_module, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`{self.server_module} {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def migrate(self) -> None:
        self.cli("migrate")

    def start_server(self) -> None:
        """Start `serve` and wait until the standard gRPC health check answers SERVING."""
        for attempt in range(START_ATTEMPTS):
            if attempt and self.envoy_process is None:
                self.grpc_port = free_port()  # Envoy not yet pointed at a port: free to pick another.
            self._server_log = open(self.server_log_path, "ab")  # noqa: SIM115 - closed in stop_server
            self.server_process = subprocess.Popen(
                [sys.executable, "-m", self.server_module, "serve"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._server_log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_serving():
                return
            if self.server_process.poll() is None:
                break  # Running but never healthy: a new port will not help.
            self.stop_server()
        self.stop_server()
        log_tail = self.logs()[-4000:]
        raise RuntimeError(f"server did not become SERVING on {self.grpc_target}; log:\n{log_tail}")

    def stop_server(self) -> None:
        _stop(self.server_process)
        if self._server_log is not None:
            self._server_log.close()
            self._server_log = None

    def start_envoy(self) -> None:
        services = envoy_proxy.discover_services(envoy_proxy.DESCRIPTOR)
        for attempt in range(START_ATTEMPTS):
            if attempt or not self.http_port:
                self.http_port, self.admin_port = free_port(), free_port()
            config = envoy_proxy.render_config(
                http_port=self.http_port,
                grpc_port=self.grpc_port,
                admin_port=self.admin_port,
                services=services,
                max_body_bytes=self.max_body_bytes,
                route_timeout_seconds=self.route_timeout_seconds,
                budget=self.budget,
                out_path=self.work_dir / "envoy.yaml",
            )
            self.envoy_process = envoy_proxy.start_envoy(config, log_path=self.envoy_log_path)
            try:
                envoy_proxy.wait_until_ready(self.admin_port, self.start_timeout, process=self.envoy_process)
                return
            except RuntimeError:
                continue  # Exited early, most likely a port taken since free_port(): try new ports.
            except TimeoutError:
                break
        _stop(self.envoy_process)
        raise RuntimeError(f"envoy did not become ready; log:\n{self.envoy_logs()[-4000:]}")

    # -- what tests use -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def create_token(self, tenant: str, scopes: Iterable[str]) -> str:
        """A new bearer token for tenant with these scopes (the CLI prints it alone on stdout)."""
        result = self.cli("tokens", "create", "--tenant", tenant, "--scopes", ",".join(scopes))
        token = result.stdout.strip()
        if not token:
            raise RuntimeError(f"`tokens create` printed no token; stderr:\n{result.stderr}")
        return token

    def logs(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self._read(self.server_log_path)

    def envoy_logs(self) -> str:
        return self._read(self.envoy_log_path)

    # -- helpers --------------------------------------------------------------------------------

    def _read(self, path: Path) -> str:
        if path in self._saved_logs:
            return self._saved_logs[path]
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_serving(self) -> bool:
        """True once grpc.health.v1 answers SERVING; False if the process exits or time runs out."""
        deadline = time.monotonic() + self.start_timeout
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.server_process is None or self.server_process.poll() is not None:
                    return False
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass  # Not listening yet, or NOT_SERVING while starting.
                time.sleep(0.1)
        return False
