"""Several server replicas on one database behind one Envoy (the shape operators run at scale)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from server.process import envoy as envoy_proxy
from tests.support.stack import Stack, _stop, free_port


class Cluster:
    """`replicas` server processes (each a Stack without its own Envoy) and one Envoy over them."""

    def __init__(
        self,
        database_url: str,
        replicas: int = 2,
        env: Mapping[str, str] | None = None,
        *,
        work_dir: Path | None = None,
        health_check_interval_seconds: float = 1.0,
    ) -> None:
        self.health_check_interval_seconds = health_check_interval_seconds
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="reconrouter-cluster-"))
        # Replicas drain for a little longer than Envoy's health-check interval (1 s) on SIGTERM.
        env = {"SHUTDOWN_DRAIN_SECONDS": "2", **(env or {})}
        self.replicas = [
            Stack(database_url, env, work_dir=self.work_dir / f"replica-{i}") for i in range(replicas)
        ]
        self.http_port = 0
        self.admin_port = 0
        self.envoy_process = None
        self.envoy_log_path = self.work_dir / "envoy.log"

    def start(self) -> Cluster:
        try:
            for replica in self.replicas:
                replica.grpc_port, replica.metrics_port, replica.http_port = (
                    free_port(),
                    free_port(),
                    free_port(),
                )
            self.replicas[0].migrate()
            for replica in self.replicas:
                replica.start_server()
            self.http_port, self.admin_port = free_port(), free_port()
            config = envoy_proxy.render_config(
                http_port=self.http_port,
                admin_port=self.admin_port,
                upstreams=[("127.0.0.1", r.grpc_port) for r in self.replicas],
                services=envoy_proxy.discover_services(),
                health_check_interval_seconds=self.health_check_interval_seconds,
                out_path=self.work_dir / "envoy.yaml",
            )
            self.envoy_process = envoy_proxy.start_envoy(config, log_path=self.envoy_log_path)
            envoy_proxy.wait_until_ready(self.admin_port, 30, process=self.envoy_process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.envoy_process)
        for replica in self.replicas:
            replica.stop_server()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def create_token(self, tenant: str, scopes: list[str]) -> str:
        return self.replicas[0].create_token(tenant, scopes)

    def healthy_upstreams(self) -> int:
        """How many replicas Envoy currently considers healthy (from its admin /clusters)."""
        import httpx

        text = httpx.get(f"http://127.0.0.1:{self.admin_port}/clusters").text
        return sum(
            1
            for line in text.splitlines()
            if line.startswith("grpc_backend::") and line.endswith("::health_flags::healthy")
        )
