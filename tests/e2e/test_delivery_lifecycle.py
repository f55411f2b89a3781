"""Durable delivery end to end (API.md §7): REST through Envoy, the real server and its delivery
workers, a real database, and a signed-webhook stand-in on 127.0.0.1 that misbehaves on cue.

Covered here: a target that is down for a while, pause/resume, retry / bulk retry / cancel, answers
with NUL and 10 kB of text, permanent (4xx) versus retryable (429, 5xx) answers, and the attempt
metrics.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.conftest import error_reason
from tests.support.databases import database_urls
from tests.support.deliveries import (
    delivery_stack,
    get_delivery,
    has_control_characters,
    metric,
    only_delivery,
    outcomes,
    parse_time,
    scrape,
    wait_for,
    wait_state,
)
from tests.support.dispatch import Tenant
from tests.support.standins import Respond, WebhookReceiver

POLL = 0.2  # DELIVERY_POLL_SECONDS of the stack


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("delivery")
    with request.param(work) as url, delivery_stack(url, work) as running:
        yield running


@pytest.fixture
def tenant(stack):
    t = Tenant(stack)
    yield t
    t.close()


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver
        assert receiver.violations == []


def use_webhook(tenant: Tenant, receiver: WebhookReceiver) -> None:
    tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)


def received(receiver: WebhookReceiver, delivery_id: str) -> int:
    """Requests the receiver got for one delivery (the webhook-id is the delivery id)."""
    return sum(1 for r in receiver.requests if r.headers.get("webhook-id") == delivery_id)


# -- 1. a target down for a while, then up -----------------------------------------------------------


def test_a_target_down_for_a_while_gets_the_delivery_exactly_once(tenant, webhook):
    use_webhook(tenant, webhook)
    single, in_bulk = tenant.exceptions(2)
    down = 3
    webhook.cue(*[Respond(503, {"error": "maintenance"}) for _ in range(down)])

    response = tenant.dispatch(single, "WEBHOOK", queue="payments")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["acknowledged"] is False and body["external_reference"] == ""
    assert body["delivery_id"] and body["next_attempt_at"]
    delivery_id = body["delivery_id"]

    delivered = wait_state(tenant, delivery_id, "DELIVERED")
    assert outcomes(delivered) == ["RETRYABLE_ERROR"] * down + ["DELIVERED"]
    assert [a["number"] for a in delivered["attempts"]] == list(range(1, down + 2))
    assert [a.get("http_status") for a in delivered["attempts"]] == [503] * down + [200]
    assert all("503" in a["error"] for a in delivered["attempts"][:down])
    assert delivered["attempt_count"] == down + 1 and delivered["delivered_at"]
    assert delivered["external_reference"] == "WH-1" and delivered.get("last_error", "") == ""
    # Received exactly once with a 2xx: every request carried this delivery's webhook-id, the
    # first `down` got the 503s, and the receiver stored it once and saw no repeat.
    assert received(webhook, delivery_id) == down + 1 == len(webhook.requests)
    assert list(webhook.deliveries) == [f"dispatch:WEBHOOK:{single}:payments"] and webhook.repeats == 0

    exception = tenant.http.get(f"/v1/exceptions/{single}").json()
    assert exception["external_system"] == "WEBHOOK" and exception["external_issue_id"] == "WH-1"
    history = tenant.http.get(f"/v1/exceptions/{single}/history").json()["items"]
    dispatches = [h for h in history if h["action"] == "DISPATCH"]
    assert [h["changes"] for h in dispatches] == [
        {
            "target_system": "WEBHOOK",
            "queue": "payments",
            "external_reference": "WH-1",
            "delivery_id": delivery_id,
        }
    ]
    assert dispatches[0]["actor_id"]  # who dispatched it, though a worker delivered it

    # The bulk route answers the item DELIVERY_SCHEDULED with its delivery, then it is delivered.
    webhook.cue(*[Respond(503, {"error": "maintenance"}) for _ in range(down)])
    bulk = tenant.bulk_dispatch([in_bulk], "WEBHOOK")
    assert bulk.status_code == 200, bulk.text
    [item] = bulk.json()["failed"]
    assert item["exception_id"] == in_bulk and item["reason"] == "DELIVERY_SCHEDULED"
    assert item["delivery_id"] and item["next_attempt_at"] and bulk.json()["succeeded"] == []
    again = wait_state(tenant, item["delivery_id"], "DELIVERED")
    assert outcomes(again)[-1] == "DELIVERED" and outcomes(again)[:-1] == ["RETRYABLE_ERROR"] * down
    assert received(webhook, item["delivery_id"]) == down + 1 and webhook.repeats == 0
    # Dispatching a delivered one again answers its ticket (200), without calling the target.
    seen = len(webhook.requests)
    replay = tenant.dispatch(single, "WEBHOOK", queue="payments")
    assert replay.status_code == 200 and replay.json()["acknowledged"] is True
    assert replay.json()["external_reference"] == "WH-1" and len(webhook.requests) == seen


# -- 6. pause and resume -------------------------------------------------------------------------------


def test_a_paused_target_keeps_its_deliveries_pending_until_resumed(tenant, webhook):
    use_webhook(tenant, webhook)
    [eid] = tenant.exceptions(1)
    paused = tenant.http.post("/v1/targets/WEBHOOK/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["target_system"] == "WEBHOOK"
    assert tenant.http.get("/v1/targets/WEBHOOK").json()["paused"] is True

    response = tenant.dispatch(eid, "WEBHOOK")  # accepted; waits its DISPATCH_WAIT_SECONDS in vain
    assert response.status_code == 202, response.text
    delivery_id = response.json()["delivery_id"]
    time.sleep(3 * POLL)  # a few more poll periods in which nothing may happen
    pending = get_delivery(tenant, delivery_id)
    assert pending["state"] == "PENDING" and pending["attempt_count"] == 0 and pending["attempts"] == []
    assert webhook.requests == []
    listed = tenant.http.get("/v1/deliveries", params={"state": "PENDING"}).json()["items"]
    assert [d["id"] for d in listed] == [delivery_id]

    resumed = tenant.http.post("/v1/targets/WEBHOOK/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    delivered = wait_state(tenant, delivery_id, "DELIVERED")
    assert outcomes(delivered) == ["DELIVERED"] and received(webhook, delivery_id) == 1


def test_pausing_needs_targets_admin_and_a_configured_target(stack, tenant):
    response = tenant.http.post("/v1/targets/WEBHOOK/pause")
    assert response.status_code == 404, response.text
    dispatcher = Tenant(stack, ("exceptions:read", "exceptions:write", "exceptions:dispatch"))
    try:
        refused = dispatcher.http.post("/v1/targets/WEBHOOK/pause")
        assert refused.status_code == 403 and error_reason(refused) == "PERMISSION_DENIED"
    finally:
        dispatcher.close()


# -- 7. retry, bulk retry and cancel ---------------------------------------------------------------------


def test_failed_deliveries_are_retried_one_by_one_or_in_bulk_and_pending_ones_cancelled(tenant, webhook):
    use_webhook(tenant, webhook)
    ids = tenant.exceptions(4)
    webhook.cue(*[Respond(400, {"error": "amount is not a decimal"}) for _ in ids])
    bulk = tenant.bulk_dispatch(ids, "WEBHOOK")
    assert bulk.status_code == 200, bulk.text
    failed = bulk.json()["failed"]
    assert [f["exception_id"] for f in failed] == ids and bulk.json()["succeeded"] == []
    assert {f["reason"] for f in failed} == {"TARGET_REJECTED"}
    assert all("amount is not a decimal" in f["error"] for f in failed)
    first, second, third, fourth = (f["delivery_id"] for f in failed)

    refused = get_delivery(tenant, first)
    assert refused["state"] == "FAILED" and refused["last_reason"] == "TARGET_REJECTED"
    assert "400" in refused["last_error"] and "amount is not a decimal" in refused["last_error"]
    assert outcomes(refused) == ["PERMANENT_ERROR"] and refused["attempts"][0]["http_status"] == 400
    listed = tenant.http.get("/v1/deliveries", params={"state": "FAILED", "target_system": "webhook"})
    assert sorted(d["id"] for d in listed.json()["items"]) == sorted([first, second, third, fourth])

    # The receiver is fixed (no more cues): a retry makes it due again, and it is delivered.
    retried = tenant.http.post(f"/v1/deliveries/{first}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "PENDING" and retried.json()["id"] == first
    delivered = wait_state(tenant, first, "DELIVERED")
    assert outcomes(delivered) == ["PERMANENT_ERROR", "DELIVERED"]
    assert (
        tenant.http.get(f"/v1/exceptions/{ids[0]}").json()["external_issue_id"]
        == delivered["external_reference"]
    )

    unknown = str(uuid.uuid4())
    many = tenant.http.post(
        "/v1/deliveries/bulk/retry", json={"delivery_ids": [second, unknown, first, third]}
    )
    assert many.status_code == 200, many.text
    answer = many.json()
    assert answer["succeeded"] == [second, third] and answer["total"] == 4
    assert [(f["delivery_id"], f["reason"]) for f in answer["failed"]] == [
        (unknown, "NOT_FOUND"),
        (first, "INVALID_STATE"),
    ]
    for did in (second, third):
        assert outcomes(wait_state(tenant, did, "DELIVERED")) == ["PERMANENT_ERROR", "DELIVERED"]
    assert get_delivery(tenant, fourth)["state"] == "FAILED"  # not asked: untouched

    again = tenant.http.post(f"/v1/deliveries/{first}/retry")
    assert again.status_code == 422 and error_reason(again) == "INVALID_STATE"
    missing = tenant.http.post(f"/v1/deliveries/{unknown}/retry")
    assert missing.status_code == 404 and error_reason(missing) == "NOT_FOUND"

    # Cancel: a PENDING delivery (its target paused) stops, and is never delivered after a resume.
    [late] = tenant.exceptions(1, transaction_id="late")
    assert tenant.http.post("/v1/targets/WEBHOOK/pause").status_code == 200
    waiting = tenant.dispatch(late, "WEBHOOK")
    assert waiting.status_code == 202, waiting.text
    late_id = waiting.json()["delivery_id"]
    cancelled = tenant.http.post(f"/v1/deliveries/{late_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    not_twice = tenant.http.post(f"/v1/deliveries/{late_id}/cancel")
    assert not_twice.status_code == 422 and error_reason(not_twice) == "INVALID_STATE"
    delivered_one = tenant.http.post(f"/v1/deliveries/{first}/cancel")
    assert delivered_one.status_code == 422 and error_reason(delivered_one) == "INVALID_STATE"
    assert tenant.http.post("/v1/targets/WEBHOOK/resume").status_code == 200
    time.sleep(3 * POLL)
    after = get_delivery(tenant, late_id)
    assert after["state"] == "CANCELLED" and after["attempts"] == [] and received(webhook, late_id) == 0
    assert tenant.http.get(f"/v1/exceptions/{late}").json().get("external_issue_id", "") == ""


def test_deliveries_stay_per_tenant(stack, tenant, webhook):
    use_webhook(tenant, webhook)
    [eid] = tenant.exceptions(1)
    delivery_id = tenant.dispatch(eid, "WEBHOOK").json()["delivery_id"]
    other = Tenant(stack)
    try:
        for call in (
            lambda: other.http.get(f"/v1/deliveries/{delivery_id}"),
            lambda: other.http.post(f"/v1/deliveries/{delivery_id}/retry"),
            lambda: other.http.post(f"/v1/deliveries/{delivery_id}/cancel"),
            lambda: other.http.get(f"/v1/exceptions/{eid}/deliveries"),
        ):
            response = call()
            assert response.status_code == 404 and error_reason(response) == "NOT_FOUND", response.text
        assert other.http.get("/v1/deliveries").json()["items"] == []
    finally:
        other.close()


# -- 8. answers holding NUL and 10 kB of text ---------------------------------------------------------


def test_a_refusal_with_nul_and_10_kb_of_text_is_stored_cleaned(tenant, webhook):
    use_webhook(tenant, webhook)
    [eid] = tenant.exceptions(1)
    junk = b"bad\x00request\x01\x1b[31m\r\n" + b"\x00".join(b"line %05d\tof junk" % i for i in range(600))
    assert len(junk) > 10_000
    webhook.cue(Respond(400, junk))
    response = tenant.dispatch(eid, "WEBHOOK")
    assert response.status_code == 422 and error_reason(response) == "TARGET_REJECTED", response.text
    assert not has_control_characters(response.json()["message"])
    delivery = only_delivery(tenant, eid)
    assert delivery["state"] == "FAILED" and outcomes(delivery) == ["PERMANENT_ERROR"]
    for text in (delivery["last_error"], delivery["attempts"][0]["error"]):
        assert "bad request" in text and "line 00000 of junk" in text, text
        assert not has_control_characters(text) and len(text) <= 1000, text
    assert delivery["attempts"][0]["http_status"] == 400


def test_a_reference_holding_nul_is_stored_cleaned(tenant, webhook):
    use_webhook(tenant, webhook)
    [eid] = tenant.exceptions(1)
    webhook.cue(Respond(200, {"reference": "REF\u0000-42\u0007"}))
    response = tenant.dispatch(eid, "WEBHOOK")
    assert response.status_code == 200, response.text
    assert response.json()["external_reference"] == "REF -42"
    delivery = only_delivery(tenant, eid)
    assert delivery["state"] == "DELIVERED" and delivery["external_reference"] == "REF -42"
    exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
    assert exception["external_issue_id"] == "REF -42"


# -- 9. permanent 4xx versus retryable 429 / 5xx, and the attempt metrics -------------------------------


def test_4xx_fail_at_once_while_429_and_5xx_are_retried(stack, tenant, webhook):
    use_webhook(tenant, webhook)
    before = scrape(stack.metrics_port)
    e404, e422, e429, e500 = tenant.exceptions(4)
    for eid, status in ((e404, 404), (e422, 422)):
        webhook.cue(Respond(status, {"error": f"refused with {status}"}))
        response = tenant.dispatch(eid, "WEBHOOK")
        assert response.status_code == 422 and error_reason(response) == "TARGET_REJECTED", response.text
        delivery = only_delivery(tenant, eid)
        assert delivery["state"] == "FAILED" and delivery["attempt_count"] == 1
        assert [(a["outcome"], a["http_status"]) for a in delivery["attempts"]] == [
            ("PERMANENT_ERROR", status)
        ]
        assert f"refused with {status}" in delivery["last_error"]

    webhook.cue(Respond(429, {"error": "slow down"}, {"Retry-After": "1"}))
    slowed = tenant.dispatch(e429, "WEBHOOK")
    assert slowed.status_code == 202, slowed.text
    delivered = wait_state(tenant, slowed.json()["delivery_id"], "DELIVERED")
    assert [(a["outcome"], a.get("http_status")) for a in delivered["attempts"]] == [
        ("RETRYABLE_ERROR", 429),
        ("DELIVERED", 200),
    ]
    first, second = delivered["attempts"]
    waited = (parse_time(second["started_at"]) - parse_time(first["started_at"])).total_seconds()
    assert waited - first["duration_ms"] / 1000 >= 0.95, delivered  # Retry-After: 1, never sooner

    webhook.cue(Respond(500, {"error": "oops"}))
    broken = tenant.dispatch(e500, "WEBHOOK")
    assert broken.status_code == 202, broken.text
    delivered = wait_state(tenant, broken.json()["delivery_id"], "DELIVERED")
    assert [(a["outcome"], a.get("http_status")) for a in delivered["attempts"]] == [
        ("RETRYABLE_ERROR", 500),
        ("DELIVERED", 200),
    ]
    assert len(webhook.deliveries) == 2 and webhook.repeats == 0

    def moved(outcome: str) -> float:
        after = scrape(stack.metrics_port)
        name = "reconrouter_delivery_attempts_total"
        return metric(after, name, target="WEBHOOK", outcome=outcome) - metric(
            before, name, target="WEBHOOK", outcome=outcome
        )

    # Each finished attempt is counted by the worker before it records it: no waiting needed.
    assert moved("PERMANENT_ERROR") >= 2 and moved("RETRYABLE_ERROR") >= 2 and moved("DELIVERED") >= 2
    text = scrape(stack.metrics_port)
    assert metric(text, "reconrouter_delivery_attempt_duration_seconds_count", target="WEBHOOK") >= 6
    assert "reconrouter_deliveries{" in text or wait_for(
        lambda: "reconrouter_deliveries{" in scrape(stack.metrics_port), 10, "the deliveries gauge"
    )
