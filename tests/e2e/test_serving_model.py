"""Where calls run (server/rpc/async_server.py): on SQLite, reads are served on the event loop, so
they answer while every pool thread waits on an external system."""

from __future__ import annotations

import threading

import httpx

from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import Stall, WebhookReceiver


def test_reads_answer_while_every_pool_thread_waits_on_a_target(tmp_path):
    env = {"GRPC_MAX_WORKERS": "1", "DISPATCH_READ_TIMEOUT_SECONDS": "60"}
    with (
        dispatch_stack(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, **env) as stack,
        WebhookReceiver() as webhook,
    ):
        tenant = Tenant(stack)
        tenant.configure("WEBHOOK", url=webhook.url, secret=webhook.secret)
        held, other = tenant.exceptions(2)
        webhook.cue(Stall())
        dispatched: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: dispatched.append(tenant.dispatch(held, "WEBHOOK")))
        worker.start()
        try:
            while webhook.count("POST", "/") == 0:  # the only pool thread now waits on the webhook
                worker.join(0.05)
            assert tenant.http.get(f"/v1/exceptions/{other}", timeout=10).status_code == 200
            assert tenant.http.get("/v1/exceptions", params={"limit": 5}, timeout=10).status_code == 200
            assert httpx.get(f"{stack.base_url}/healthz", timeout=10).status_code == 200
            assert dispatched == []  # still waiting: the reads did not wait for it
        finally:
            webhook.release()
            worker.join()
            tenant.close()
        assert webhook.violations == []
