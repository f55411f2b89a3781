"""Routed dispatch end to end (API.md §8): REST through Envoy, the real server, its delivery workers
and a loopback webhook receiver. Dispatch without target_system goes where the first enabled matching
rule says, per item in bulk, NO_ROUTE where none matches; an explicit target bypasses the rules."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.conftest import error_reason
from tests.support.databases import database_urls
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import WebhookReceiver


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("routing")
    # The scheduler looks for overdue exceptions to escalate every 0.2 s here (default 30 s).
    with request.param(work) as url, dispatch_stack(url, work, ESCALATION_POLL_SECONDS="0.2") as running:
        yield running


@pytest.fixture
def tenant(stack):
    t = Tenant(stack)
    yield t
    t.close()


@pytest.fixture
def webhook():
    with WebhookReceiver() as s:
        yield s
        assert s.violations == []


def rule(tenant: Tenant, **body) -> dict:
    response = tenant.http.post("/v1/routing-rules", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def history(tenant: Tenant, eid: str, action: str) -> list[dict]:
    items = tenant.http.get(f"/v1/exceptions/{eid}/history").json()["items"]
    return [h for h in items if h["action"] == action]


def test_routed_single_and_bulk_dispatch_mixed_with_no_route(tenant, webhook):
    tenant.configure("WEBHOOK", url=webhook.url, secret=webhook.secret)
    hot = rule(
        tenant,
        name="high to the webhook",
        priority=10,
        conditions={"severities": ["HIGH"]},
        action={
            "target_system": "webhook",
            "queue": "hot",
            "assignee": "oncall",
            "severity": "CRITICAL",
            "severity_reason": "high value desk",
        },
    )
    desk = rule(
        tenant,
        name="bank to the desk",
        priority=20,
        conditions={"sources": ["bank"]},
        action={"targetSystem": "MANUAL", "queue": "desk"},
    )
    [high, second_high] = tenant.exceptions(2, severity="HIGH", source="bank")
    [bank] = tenant.exceptions(1, severity="LOW", source="bank")
    [nowhere] = tenant.exceptions(1, severity="LOW", source="ledger")

    # Under an idempotency key, like any client that retries: the call still waits for the webhook.
    bulk = tenant.http.post(
        "/v1/exceptions/bulk/dispatch",
        json={"exception_ids": [high, bank, nowhere]},
        headers={"Idempotency-Key": f"routed-{uuid.uuid4().hex}"},
    )
    assert bulk.status_code == 200, bulk.text
    body = bulk.json()
    assert body["total"] == 3 and body["succeeded"] == [high, bank]
    assert [(f["exception_id"], f.get("reason")) for f in body["failed"]] == [(nowhere, "NO_ROUTE")]
    assert len(webhook.deliveries) == 1

    routed = tenant.http.get(f"/v1/exceptions/{high}").json()
    assert (routed["severity"], routed["assigned_to"], routed["status"]) == ("CRITICAL", "oncall", "ASSIGNED")
    assert routed["external_system"] == "WEBHOOK"
    [entry] = history(tenant, high, "ROUTE")
    assert entry["changes"]["rule_id"] == hot["id"]
    assert entry["changes"]["severity"] == {"from": "HIGH", "to": "CRITICAL"}
    assert entry["changes"]["severity_reason"] == "high value desk"
    [dispatched] = history(tenant, high, "DISPATCH")
    assert (dispatched["changes"]["target_system"], dispatched["changes"]["queue"]) == ("WEBHOOK", "hot")
    assert history(tenant, bank, "ROUTE")[0]["changes"]["rule_id"] == desk["id"]
    assert tenant.http.get(f"/v1/exceptions/{bank}").json()["external_system"] == "MANUAL"

    single = tenant.http.post(f"/v1/exceptions/{second_high}/dispatch", json={})
    assert single.status_code == 200, single.text
    assert (single.json()["target_system"], single.json()["queue"]) == ("WEBHOOK", "hot")
    assert len(webhook.deliveries) == 2

    refused = tenant.http.post(f"/v1/exceptions/{nowhere}/dispatch", json={})
    assert refused.status_code == 422 and error_reason(refused) == "NO_ROUTE"
    assert history(tenant, nowhere, "ROUTE") == []
    # An explicit target bypasses the rules.
    explicit = tenant.http.post(f"/v1/exceptions/{nowhere}/dispatch", json={"target_system": "MANUAL"})
    assert explicit.status_code == 200 and explicit.json()["queue"] == ""
    assert history(tenant, nowhere, "ROUTE") == []


def test_a_queue_without_a_target_is_refused(tenant):
    [eid] = tenant.exceptions(1)
    response = tenant.http.post(f"/v1/exceptions/{eid}/dispatch", json={"queue": "OPS"})
    assert response.status_code == 400 and error_reason(response) == "INVALID_ARGUMENT"


def test_auto_dispatch_on_create_reaches_the_receiver_once(tenant, webhook):
    tenant.configure("WEBHOOK", url=webhook.url, secret=webhook.secret)
    rule(
        tenant,
        name="auto",
        priority=1,
        conditions={"sources": ["auto"]},
        action={"target_system": "WEBHOOK", "queue": "auto"},
        auto_dispatch=True,
    )
    single = tenant.http.post("/v1/exceptions", json={"transaction_id": "one", "source": "auto"})
    assert single.status_code == 200, single.text
    bulk = tenant.http.post(
        "/v1/exceptions/bulk/create",
        json={"exceptions": [{"transaction_id": "two", "source": "auto"}, {"transaction_id": "three"}]},
    )
    assert bulk.status_code == 200, bulk.text
    auto_ids = [single.json()["id"], bulk.json()["exceptions"][0]["id"]]
    plain = bulk.json()["exceptions"][1]["id"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [tenant.http.get(f"/v1/exceptions/{eid}").json().get("external_system") for eid in auto_ids]
        if states == ["WEBHOOK", "WEBHOOK"]:
            break
        time.sleep(0.1)
    assert states == ["WEBHOOK", "WEBHOOK"]
    received = [p["exception"]["transaction_id"] for p in webhook.deliveries.values()]
    assert sorted(received) == ["one", "two"]
    assert webhook.repeats == 0
    for eid in auto_ids:
        assert len(history(tenant, eid, "DISPATCH")) == 1
        [delivery] = tenant.http.get(f"/v1/exceptions/{eid}/deliveries").json()["items"]
        assert (delivery["state"], delivery["queue"]) == ("DELIVERED", "auto")
    assert tenant.http.get(f"/v1/exceptions/{plain}/deliveries").json()["items"] == []
    # Dispatching one again joins its delivery: still one ticket.
    again = tenant.http.post(f"/v1/exceptions/{auto_ids[0]}/dispatch", json={})
    assert again.status_code == 200 and len(webhook.deliveries) == 2


def escalations_counted(stack) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith("reconrouter_escalations_total")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_an_overdue_exception_is_escalated_once_by_the_scheduler(stack, tenant):
    counted = escalations_counted(stack)
    policy = {
        "tiers": [{"severity": "HIGH", "due_in_hours": 1}],
        "escalation": {"target_system": "MANUAL", "queue": "sla"},
    }
    assert tenant.http.put("/v1/sla-policy", json=policy).status_code == 200
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    [late] = tenant.exceptions(1, severity="HIGH", occurred_at=two_hours_ago)
    [fresh] = tenant.exceptions(1, severity="HIGH")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not history(tenant, late, "ESCALATE"):
        time.sleep(0.1)
    [entry] = history(tenant, late, "ESCALATE")
    assert entry["actor_id"] == "sla-escalation"
    assert (entry["changes"]["target_system"], entry["changes"]["queue"]) == ("MANUAL", "sla")
    [delivery] = tenant.http.get(f"/v1/exceptions/{late}/deliveries").json()["items"]
    assert (delivery["state"], delivery["queue"]) == ("DELIVERED", "sla")
    time.sleep(1)  # five more rounds of the scheduler: a second escalation would show now
    assert len(history(tenant, late, "ESCALATE")) == 1
    assert history(tenant, fresh, "ESCALATE") == []
    assert escalations_counted(stack) == counted + 1
