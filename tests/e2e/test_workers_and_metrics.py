"""WORKERS=2 over one port, Prometheus metrics that move, and a clean SIGTERM."""

import json
import re
import signal
import uuid

import grpc
import httpx
from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.exceptions.v1 import exceptions_pb2_grpc

from tests.support.stack import Stack


def metric(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_port_and_report_metrics_together(tmp_path):
    with Stack(f"sqlite:///{tmp_path / 'db.sqlite'}", {"WORKERS": "2"}, work_dir=tmp_path) as stack:
        token = stack.create_token("workers", ["exceptions:read", "exceptions:write", "exceptions:dispatch"])
        auth = [("authorization", f"Bearer {token}")]
        before = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics").text
        # A fresh connection per call: SO_REUSEPORT spreads connections (not calls) over workers.
        for _ in range(40):
            with grpc.insecure_channel(
                stack.grpc_target, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                exceptions_pb2_grpc.ExceptionsServiceStub(ch).ListExceptions(
                    pb.ListExceptionsRequest(), metadata=auth
                )
        response = httpx.post(
            f"{stack.base_url}/v1/exceptions",
            json={"transaction_id": "m"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        rest = httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"})
        eid = response.json()["id"]
        dispatched = rest.post(
            "/v1/exceptions/bulk/dispatch",
            json={"exception_ids": [eid, str(uuid.uuid4())], "target_system": "MANUAL"},
        )
        assert dispatched.status_code == 200
        batch = rest.post(
            "/v1/bulk", json={"requests": [{"url": f"/v1/exceptions/{eid}"}, {"url": "/v1/nope"}]}
        )
        assert batch.status_code == 400  # an unknown route refuses the whole envelope, nothing runs
        batch = rest.post(
            "/v1/bulk",
            json={"requests": [{"url": f"/v1/exceptions/{eid}"}, {"url": f"/v1/exceptions/{uuid.uuid4()}"}]},
        )
        assert [item["status"] for item in batch.json()] == [200, 404]
        after = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics").text
        assert (
            metric(after, "reconrouter_rpc_calls_total", rpc="ListExceptions", code="OK")
            - metric(before, "reconrouter_rpc_calls_total", rpc="ListExceptions", code="OK")
            == 40
        )
        assert metric(after, "reconrouter_rpc_calls_total", rpc="CreateException", code="OK") >= 1
        assert metric(after, "reconrouter_rpc_duration_seconds_count", rpc="ListExceptions") >= 40
        assert metric(after, "reconrouter_dispatch_items_total", target="MANUAL", outcome="succeeded") == 1
        assert metric(after, "reconrouter_dispatch_items_total", target="MANUAL", outcome="NOT_FOUND") == 1
        assert metric(after, "reconrouter_bulk_subrequests_total", status="2xx") == 1
        assert metric(after, "reconrouter_bulk_subrequests_total", status="4xx") == 1
        pids = {
            json.loads(line).get("pid")
            for line in stack.logs().splitlines()
            if line.startswith("{") and '"msg": "call"' in line
        }
        assert len(pids) == 2, f"calls were served by {pids}"
        stack.server_process.send_signal(signal.SIGTERM)
        assert stack.server_process.wait(timeout=30) == 0
        assert stack.logs().count('"msg": "stopped"') == 2


def test_rest_calls_reach_every_worker(tmp_path):
    """Envoy keeps an upstream connection per client connection (envoy/README.md), so REST traffic
    from several clients spreads over the WORKERS like gRPC traffic does."""
    with Stack(f"sqlite:///{tmp_path / 'db.sqlite'}", {"WORKERS": "2"}, work_dir=tmp_path) as stack:
        headers = {"Authorization": f"Bearer {stack.create_token('spread', ['exceptions:read'])}"}
        missing = f"{stack.base_url}/v1/exceptions/{uuid.uuid4()}"
        for _ in range(20):
            with httpx.Client(headers=headers) as client:  # a new connection each time
                assert client.get(missing).status_code == 404
        pids = {
            entry.get("pid")
            for entry in (json.loads(line) for line in stack.logs().splitlines() if line.startswith("{"))
            if entry.get("msg") == "call" and entry.get("rpc", "").endswith("/GetException")
        }
        assert len(pids) == 2, f"REST calls were served by {pids}"
