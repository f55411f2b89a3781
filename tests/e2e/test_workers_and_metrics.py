"""WORKERS=2 over one port, Prometheus metrics that move, and a clean SIGTERM."""

import json
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.exceptions.v1 import exceptions_pb2_grpc

from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack, wait_for
from tests.support.dispatch import Tenant
from tests.support.stack import Stack
from tests.support.standins import JiraStandIn, WebhookReceiver, hub_signature, jira_issue_updated


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
        # SQLite writers queue in their process (storage/write_gate.py): the create and the dispatch
        # waited there (for nothing, or for the other's turn), and nobody waits now.
        assert metric(after, "reconrouter_db_write_wait_seconds_count") >= 2
        assert "reconrouter_db_writers_waiting " in after
        assert metric(after, "reconrouter_db_writers_waiting") == 0
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


# -- escalation backlog, routing rules cache, inbound hooks, deliveries by kind -----------------------

HOOK_RATE = 12


@pytest.fixture(params=database_urls())
def metered(request, tmp_path):
    env = {
        "WORKERS": "2",  # the multiprocess exposition: summed counters, the backlog gauge's max
        "ESCALATION_POLL_SECONDS": "0",  # nothing escalates: the backlog only moves as exceptions do
        "RATE_LIMIT_HOOKS_PER_MINUTE": str(HOOK_RATE),
        "HOOK_MAX_BODY_BYTES": "65536",
    }
    with request.param(tmp_path) as url, delivery_stack(url, tmp_path, **env) as stack:
        yield stack


def scrape(stack) -> str:
    response = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=30)
    assert response.status_code == 200
    return response.text


def wait_metric(stack, name: str, value: float, **labels) -> str:
    """The exposition once `name{labels}` reads `value` (the workers sample every few seconds)."""

    def reached() -> str | None:
        text = scrape(stack)
        return text if metric(text, name, **labels) == value else None

    return wait_for(reached, timeout=60, what=f"{name}{labels} == {value}")


def test_the_escalation_backlog_follows_overdue_exceptions_of_tenants_with_an_escalation(metered):
    with WebhookReceiver() as receiver:
        escalating, quiet = Tenant(metered), Tenant(metered)
        try:
            escalating.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)
            tiers = [{"severity": "CRITICAL", "due_in_hours": 1}]
            policy = {"tiers": tiers, "escalation": {"target_system": "WEBHOOK"}}
            assert escalating.http.put("/v1/sla-policy", json=policy).status_code == 200
            long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
            late = escalating.exceptions(3, severity="CRITICAL", occurred_at=long_ago)
            escalating.exceptions(2, severity="CRITICAL")  # due in an hour: not in the backlog
            # Overdue too, but its tenant has no escalation target: nothing would escalate it.
            quiet.exceptions(4, severity="CRITICAL", occurred_at=long_ago)
            wait_metric(metered, "reconrouter_escalation_backlog", 3)
            body = {"exception_ids": late[:2], "resolution": "fixed", "reason": "done"}
            assert escalating.http.post("/v1/exceptions/bulk/resolve", json=body).status_code == 200
            wait_metric(metered, "reconrouter_escalation_backlog", 1)
            assert metric(scrape(metered), "reconrouter_escalations_total") == 0
            assert receiver.deliveries == {}
        finally:
            escalating.close()
            quiet.close()


def test_routing_rules_cache_lookups_are_counted(metered):
    tenant = Tenant(metered)
    try:
        events = ("hit", "miss", "reload")
        before = scrape(metered)
        for _ in range(3):
            assert tenant.http.get("/v1/routing-rules").status_code == 200
        after = scrape(metered)
        moved = {
            event: metric(after, "reconrouter_routing_rules_cache_total", event=event)
            - metric(before, "reconrouter_routing_rules_cache_total", event=event)
            for event in events
        }
        # One lookup per call; the first in each worker process misses, later ones there hit.
        assert sum(moved.values()) == 3 and 1 <= moved["miss"] <= 2 and moved["hit"] >= 1, moved
    finally:
        tenant.close()


def test_hook_posts_are_counted_by_outcome_and_resolutions_by_delivery_kind(metered):
    secret = f"inbound-{uuid.uuid4().hex}"
    with JiraStandIn() as jira, WebhookReceiver() as receiver:
        tenant = Tenant(metered)
        try:
            path = tenant.configure(
                "JIRA",
                base_url=jira.url,
                email=jira.email,
                api_token=jira.token,
                project_key="OPS",
                inbound_secret=secret,
            ).json()["inbound_path"]
            tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)
            (eid,) = tenant.exceptions(1)
            assert tenant.dispatch(eid, "WEBHOOK").status_code == 200
            dispatched = tenant.dispatch(eid, "JIRA")
            assert dispatched.status_code == 200, dispatched.text
            key = dispatched.json()["external_reference"]
            before = scrape(metered)
            sent: dict[str, int] = {}

            def post(outcome: str, status: int, content: bytes, headers: dict[str, str], at: str = path):
                response = httpx.post(metered.base_url + at, content=content, headers=headers, timeout=30)
                assert response.status_code == status, (outcome, response.text)
                if status < 300:
                    assert response.json()["status"] == outcome
                sent[outcome] = sent.get(outcome, 0) + 1

            body, headers = jira_issue_updated(jira, key, secret, resolution="Done")
            post("APPLIED", 200, body, headers)
            post("DUPLICATE", 200, body, headers)  # JIRA's retry: the same webhook identifier
            again, again_headers = jira_issue_updated(jira, key, secret, resolution="Done")
            post("UNCHANGED", 200, again, again_headers)  # a new event, but resolved is final
            unknown, unknown_headers = jira_issue_updated(jira, "OPS-99999", secret)
            post("IGNORED", 202, unknown, unknown_headers)
            garbage = b"not json"
            post("INVALID", 400, garbage, {**headers, "X-Hub-Signature": hub_signature(secret, garbage)})
            post("BAD_SIGNATURE", 401, body.replace(b'"Done"', b'"Open"'), headers)
            post("UNKNOWN_HOOK", 401, body, headers, at="/v1/hooks/jira/no-such-hook")
            huge = b'{"pad": "' + b"x" * 70000 + b'"}'
            post("TOO_LARGE", 413, huge, {**headers, "X-Hub-Signature": hub_signature(secret, huge)})
            # Admitted posts use up the tenant's hooks rate; refused ones (401, 413) do not.
            for _ in range(3 * HOOK_RATE):
                response = httpx.post(
                    f"{metered.base_url}{path}", content=unknown, headers=unknown_headers, timeout=30
                )
                outcome = "RATE_LIMITED" if response.status_code == 429 else response.json()["status"]
                sent[outcome] = sent.get(outcome, 0) + 1
                if outcome == "RATE_LIMITED":
                    break
            assert sent["RATE_LIMITED"] == 1 and sent["IGNORED"] >= 2, sent
            after = scrape(metered)
            counted = {
                outcome: metric(after, "reconrouter_hook_posts_total", system="JIRA", outcome=outcome)
                - metric(before, "reconrouter_hook_posts_total", system="JIRA", outcome=outcome)
                for outcome in sent
            }
            assert counted == sent
            # The JIRA resolution goes on to the webhook (not back to JIRA) as a RESOLUTION delivery.
            wait_for(lambda: any(kind == "exception.resolved" for kind, _, _ in receiver.events), 30)
            attempts = "reconrouter_delivery_attempts_total"
            resolved = {"target": "WEBHOOK", "kind": "resolution", "outcome": "DELIVERED"}
            after = wait_metric(metered, attempts, 1, **resolved)
            assert metric(after, attempts, target="WEBHOOK", kind="dispatch", outcome="DELIVERED") == 1
            assert metric(after, attempts, target="JIRA", kind="dispatch", outcome="DELIVERED") == 1
            assert metric(after, attempts, target="JIRA", kind="resolution") == 0
            assert receiver.violations == [] and jira.violations == []
        finally:
            tenant.close()
