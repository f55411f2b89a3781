"""Delivery workers run apart from the servers (docs/delivery.md): with DELIVERY_WORKERS_IN_SERVER=false
a server records dispatches and delivers nothing; `python -m server deliver` delivers them, exposes
its metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack, wait_for, wait_state
from tests.support.dispatch import Tenant
from tests.support.stack import ROOT, free_port
from tests.support.standins import WebhookReceiver


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("apart")
    with request.param(work) as url, delivery_stack(url, work, DELIVERY_WORKERS_IN_SERVER="false") as running:
        yield running


def test_a_server_without_workers_records_and_python_m_server_deliver_delivers(stack):
    tenant = Tenant(stack)
    with WebhookReceiver() as receiver:
        tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)
        (exception_id,) = tenant.exceptions(1)
        response = tenant.dispatch(exception_id, "WEBHOOK")
        assert response.status_code == 202, response.text
        delivery_id = response.json()["delivery_id"]
        time.sleep(1.0)  # five poll periods of a worker, had the server one
        assert receiver.requests == []
        assert tenant.http.get(f"/v1/deliveries/{delivery_id}").json()["state"] == "PENDING"

        metrics_port = free_port()
        env = {**stack.env, "METRICS_PORT": str(metrics_port)}
        worker = subprocess.Popen(
            [sys.executable, "-m", "server", "deliver"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            delivered = wait_state(tenant, delivery_id, "DELIVERED")
            assert delivered["attempts"][-1]["outcome"] == "DELIVERED"
            assert [r.headers.get("webhook-id") for r in receiver.requests] == [delivery_id]

            def attempts_metric() -> str | None:
                try:
                    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
                except httpx.HTTPError:
                    return None
                lines = [x for x in text.splitlines() if x.startswith("reconrouter_delivery_attempts_total")]
                return "\n".join(lines) if any('outcome="DELIVERED"' in x for x in lines) else None

            assert 'target="WEBHOOK"' in wait_for(attempts_metric, 10, "the deliver process's metrics")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                raise
            stderr = worker.stderr.read() if worker.stderr else ""
        assert code == 0, stderr[-2000:]
        assert "stopping delivery workers" in stderr
    tenant.close()
