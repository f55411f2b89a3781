"""Dispatch to JIRA, ServiceNow and signed webhooks end to end: REST through Envoy, the real server
and its delivery workers, loopback stand-ins that check every request against the documented API and
fail on cue. Dispatch is durable (API.md §7): a call answers once each item has a first outcome
(delivered, refused, or scheduled for a retry: 202 / DELIVERY_SCHEDULED), and the workers retry."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import targets as targets_table
from tests.e2e.conftest import error_reason, violation_fields
from tests.support.databases import database_urls
from tests.support.deliveries import (
    deliveries_of,
    get_delivery,
    outcomes,
    parse_time,
    wait_for,
    wait_state,
)
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import Drop, JiraStandIn, Respond, ServiceNowStandIn, Stall, WebhookReceiver

SECRETS: set[str] = set()  # every secret any test configured: none may reach a response or a log


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("dispatch")
    # The breaker is per (tenant, target): a longer reset only slows the test that opens one.
    with request.param(work) as url, dispatch_stack(url, work, DISPATCH_BREAKER_RESET_SECONDS="3") as running:
        yield running
        logs = running.logs()
        leaked = sorted(s for s in SECRETS if s in logs)
        assert leaked == [], f"secrets in the server log: {leaked}"


@pytest.fixture
def tenant(stack):
    t = Tenant(stack)
    yield t
    t.close()


@pytest.fixture
def jira():
    with JiraStandIn(reject=lambda f: "JIRA refuses this summary" if "reject" in f["summary"] else None) as s:
        yield s
        assert s.violations == []


@pytest.fixture
def servicenow():
    with ServiceNowStandIn() as s:
        yield s
        assert s.violations == []


@pytest.fixture
def webhook():
    with WebhookReceiver(
        reject=lambda p: "no" if "reject" in p["exception"]["transaction_id"] else None,
    ) as s:
        yield s
        assert s.violations == []


def use_jira(tenant: Tenant, jira: JiraStandIn, **extra: str):
    SECRETS.add(jira.token)
    return tenant.configure("JIRA", base_url=jira.url, email=jira.email, api_token=jira.token, **extra)


def use_servicenow(tenant: Tenant, sn: ServiceNowStandIn):
    SECRETS.add(sn.password)
    return tenant.configure("SERVICENOW", instance_url=sn.url, username=sn.username, password=sn.password)


def use_webhook(tenant: Tenant, receiver: WebhookReceiver):
    SECRETS.add(receiver.secret)
    return tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)


def assert_clean(response, *hosts: str) -> None:
    text = response.text
    assert not any(s in text for s in SECRETS), text
    for host in hosts:
        assert host.split("//")[1] not in text, text  # no target host names in answers


# -- target configuration ---------------------------------------------------------------------------


def test_target_configuration_round_trip_with_write_only_secrets(stack, tenant, jira):
    put = use_jira(tenant, jira, project_key="OPS")
    body = put.json()
    assert body["target_system"] == "JIRA" and body["base_url"] == jira.url and body["project_key"] == "OPS"
    assert body["issue_type"] == "Task" and body["configured_secrets"] == ["api_token", "email"]
    assert "api_token" not in body and "email" not in body
    got = tenant.http.get("/v1/targets/jira")
    assert got.status_code == 200 and got.json() == body
    listed = tenant.http.get("/v1/targets").json()["targets"]
    assert [t["target_system"] for t in listed] == ["JIRA", "MANUAL"]
    for response in (put, got):
        assert_clean(response)
    # A PUT without the secrets keeps them (camelCase accepted too); the dispatch still authenticates.
    again = tenant.http.put("/v1/targets/JIRA", json={"baseUrl": jira.url, "projectKey": "FIN"})
    assert again.status_code == 200 and again.json()["configured_secrets"] == ["api_token", "email"]
    [eid] = tenant.exceptions(1)
    assert tenant.dispatch(eid, "JIRA").json()["external_reference"] == "FIN-1"
    # Encrypted at rest: the stored row holds no secret in clear.
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                sa.select(targets_table).where(targets_table.c.tenant_id == tenant.id)
            ).one()
    finally:
        engine.dispose()
    assert jira.token not in str(tuple(stored)) and jira.email not in str(tuple(stored))
    deleted = tenant.http.delete("/v1/targets/JIRA")
    assert deleted.status_code == 200 and deleted.json() == {}
    assert tenant.http.get("/v1/targets/JIRA").status_code == 404
    missing = tenant.dispatch(eid, "JIRA", queue="OPS")
    assert missing.status_code == 422 and error_reason(missing) == "TARGET_NOT_CONFIGURED"


def test_target_configuration_is_validated(tenant):
    cases = [
        ("JIRA", {"base_url": "https://jira.example", "api_token": "x", "url": "https://x"}, {"url"}),
        ("JIRA", {"base_url": "https://jira.example"}, {"api_token"}),
        ("JIRA", {"base_url": "ftp://jira.example", "api_token": "x"}, {"base_url"}),
        ("JIRA", {"base_url": "https://u:p@jira.example", "api_token": "x"}, {"base_url"}),
        (
            "JIRA",
            {"base_url": "https://jira.example", "api_token": "x", "project_key": "no spaces"},
            {"project_key"},
        ),
        ("SERVICENOW", {"instance_url": "https://sn.example", "username": "u"}, {"password"}),
        ("WEBHOOK", {"url": "https://hooks.example", "secret": "short"}, {"secret"}),
        ("MANUAL", {"url": "https://hooks.example"}, {"url"}),
    ]
    for target, body, fields in cases:
        response = tenant.http.put(f"/v1/targets/{target}", json=body)
        assert response.status_code == 400, (target, body, response.text)
        assert error_reason(response) == "INVALID_ARGUMENT" and violation_fields(response) == fields
    unknown = tenant.http.put("/v1/targets/ZENDESK", json={})
    assert unknown.status_code == 422 and error_reason(unknown) == "UNSUPPORTED_TARGET_SYSTEM"
    assert tenant.http.put("/v1/targets/manual", json={}).json()["target_system"] == "MANUAL"
    manual = tenant.http.delete("/v1/targets/MANUAL")
    assert manual.status_code == 422 and error_reason(manual) == "INVALID_STATE"
    assert tenant.http.delete("/v1/targets/WEBHOOK").status_code == 404


def test_targets_need_the_targets_admin_scope_and_stay_per_tenant(stack, tenant, webhook):
    use_webhook(tenant, webhook)
    dispatcher = Tenant(stack, ("exceptions:read", "exceptions:write", "exceptions:dispatch"))
    other = Tenant(stack)
    try:
        for call in (
            lambda t: t.http.get("/v1/targets"),
            lambda t: t.http.get("/v1/targets/WEBHOOK"),
            lambda t: t.http.put("/v1/targets/WEBHOOK", json=webhook.target_body()),
            lambda t: t.http.delete("/v1/targets/WEBHOOK"),
        ):
            response = call(dispatcher)
            assert response.status_code == 403 and error_reason(response) == "PERMISSION_DENIED"
        assert other.http.get("/v1/targets/WEBHOOK").status_code == 404
        assert [t["target_system"] for t in other.http.get("/v1/targets").json()["targets"]] == ["MANUAL"]
    finally:
        dispatcher.close()
        other.close()


# -- each connector end to end ----------------------------------------------------------------------


def test_jira_single_dispatch_records_the_issue(tenant, jira):
    use_jira(tenant, jira)
    [eid] = tenant.exceptions(1, severity="CRITICAL")
    response = tenant.dispatch(eid, "jira", queue="OPS")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["external_reference"] == "OPS-1" and body["acknowledged"] is True
    assert body["target_system"] == "JIRA" and body["queue"] == "OPS"
    exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
    assert exception["external_system"] == "JIRA" and exception["external_issue_id"] == "OPS-1"
    history = tenant.http.get(f"/v1/exceptions/{eid}/history").json()["items"]
    assert history[-1]["action"] == "DISPATCH"
    assert history[-1]["changes"] == {
        "target_system": "JIRA",
        "queue": "OPS",
        "external_reference": "OPS-1",
        "delivery_id": body["delivery_id"],
    }
    assert jira.issues["OPS-1"]["fields"]["priority"] == {"name": "Highest"}
    # Again: the delivered delivery answers its issue, not a second one.
    again = tenant.dispatch(eid, "JIRA", queue="OPS").json()
    assert (again["external_reference"], again["delivery_id"]) == ("OPS-1", body["delivery_id"])
    assert len(jira.issues) == 1 and jira.count("POST", "/") == 1


def test_bulk_dispatch_of_100_mixed_results_in_request_order(tenant, jira):
    use_jira(tenant, jira, project_key="FIN")
    ids = tenant.exceptions(90, transaction_id=lambda i: f"reject-{i}" if i % 7 == 0 else f"ok-{i}")
    resolved = ids[5]
    assert tenant.http.post(
        "/v1/exceptions/bulk/resolve", json={"exception_ids": [resolved], "resolution": "done"}
    ).json()["succeeded"] == [resolved]
    unknown = [str(uuid.uuid4()) for _ in range(10)]
    request_ids = ids[:45] + unknown[:5] + ids[45:] + unknown[5:]
    response = tenant.bulk_dispatch(request_ids, "JIRA")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 100
    expected_failed = []
    for eid in request_ids:
        if eid in unknown:
            expected_failed.append((eid, "exception not found"))
        elif eid == resolved:
            expected_failed.append((eid, "exception is resolved"))
        elif ids.index(eid) % 7 == 0:
            expected_failed.append((eid, "JIRA rejected the issue: 400 JIRA refuses this summary"))
    assert [(f["exception_id"], f["error"]) for f in body["failed"]] == expected_failed
    failed = {eid for eid, _ in expected_failed}
    assert body["succeeded"] == [eid for eid in request_ids if eid not in failed]
    # Each delivery is its own attempt, one issue per request and none sent twice: 76 created and
    # 13 refused; nothing sent for the 10 unknown ids or the resolved exception.
    attempted = [eid for eid in request_ids if eid not in unknown and eid != resolved]
    assert jira.count("POST", "/rest/api/2/issue") == len(attempted) == 89
    assert len(jira.issues) == len(body["succeeded"])
    by_label = {issue["fields"]["labels"][0]: key for key, issue in jira.issues.items()}
    for eid in body["succeeded"]:
        exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
        assert exception["external_issue_id"] == by_label[f"dispatch:JIRA:{eid}"]


def test_servicenow_dispatch_creates_incidents(tenant, servicenow):
    use_servicenow(tenant, servicenow)
    ids = tenant.exceptions(3)
    single = tenant.dispatch(ids[0], "SERVICENOW", queue="Finance Ops")
    assert single.status_code == 200 and single.json()["external_reference"] == "INC0010001"
    bulk = tenant.bulk_dispatch(ids, "servicenow", queue="Finance Ops").json()
    assert bulk["succeeded"] == ids and bulk["failed"] == []
    assert len(servicenow.records) == 3  # the first was not sent twice
    # The two new incidents are created concurrently (the delivery workers), so which gets which number
    # is the stand-in's arrival order; each exception must hold one of the numbers created for it.
    references = [tenant.http.get(f"/v1/exceptions/{eid}").json()["external_issue_id"] for eid in ids]
    assert references[0] == "INC0010001"
    assert sorted(references[1:]) == ["INC0010002", "INC0010003"]


def test_webhook_dispatch_is_signed(tenant, webhook):
    use_webhook(tenant, webhook)
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "WEBHOOK", queue="payments")
    assert response.status_code == 200 and response.json()["external_reference"] == "WH-1"
    [payload] = webhook.deliveries.values()
    assert payload["exception"]["id"] == eid and payload["queue"] == "payments"
    assert payload["dispatch_key"] == f"dispatch:WEBHOOK:{eid}:payments"


def test_a_rejection_is_422_target_rejected(tenant, jira):
    use_jira(tenant, jira)
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "JIRA", queue="NOPE")
    assert response.status_code == 422 and error_reason(response) == "TARGET_REJECTED"
    assert response.json()["message"] == "JIRA rejected the issue: 400 valid project is required"
    assert tenant.dispatch(eid, "JIRA", queue="OPS").status_code == 200  # nothing left pending


# -- resilience end to end --------------------------------------------------------------------------


def test_retries_honour_retry_after(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(Respond(503, {"error": "busy"}), Respond(429, {"error": "slow down"}, {"Retry-After": "1"}))
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "WEBHOOK")
    # The 503 is the first attempt's outcome: the delivery is scheduled and the call answers 202.
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["acknowledged"] is False and body["delivery_id"] and body["next_attempt_at"]
    delivery = wait_state(tenant, body["delivery_id"], "DELIVERED")
    assert outcomes(delivery) == ["RETRYABLE_ERROR", "RETRYABLE_ERROR", "DELIVERED"]
    assert [a["http_status"] for a in delivery["attempts"]] == [503, 429, 200]
    asked, delivered = delivery["attempts"][1:]
    # Not sooner than the 429's Retry-After (a lower bound the workers must respect).
    waited = parse_time(delivered["started_at"]) - parse_time(asked["started_at"])
    assert waited.total_seconds() >= 1, delivery
    assert webhook.count("POST", "/") == 3 and len(webhook.deliveries) == 1


def test_a_failing_target_answers_202_and_the_delivery_delivers_once_it_recovers(tenant, jira):
    """Was: 502 TARGET_UNAVAILABLE after the in-call retries. Now (API.md §7) a retryable failure
    schedules the delivery: 202 with its id; the workers retry until JIRA answers."""
    use_jira(tenant, jira)
    jira.cue(*[Respond(503, {"errorMessages": ["maintenance"]}) for _ in range(3)])
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "JIRA", queue="OPS")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["acknowledged"], body["external_reference"]) == (False, "")
    assert body["delivery_id"] and body["next_attempt_at"] and "dispatched_at" not in body
    assert_clean(response, jira.url)
    delivery = wait_state(tenant, body["delivery_id"], "DELIVERED")
    assert outcomes(delivery) == ["RETRYABLE_ERROR"] * 3 + ["DELIVERED"]
    assert delivery["attempts"][0]["error"] == "JIRA is unavailable: answered 503"
    assert delivery["external_reference"] == "OPS-1" and len(jira.issues) == 1
    assert_clean(tenant.http.get(f"/v1/deliveries/{body['delivery_id']}"), jira.url)
    assert tenant.http.get(f"/v1/exceptions/{eid}").json()["external_issue_id"] == "OPS-1"
    retried = tenant.dispatch(eid, "JIRA", queue="OPS")
    assert retried.status_code == 200 and retried.json()["external_reference"] == "OPS-1"
    assert len(jira.issues) == 1 and jira.count("POST", "/rest/api/2/issue") == 4


def test_a_timeout_is_retried_and_delivers_once(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(Stall())  # the first attempt gets no answer (DISPATCH_READ_TIMEOUT_SECONDS=1)
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "WEBHOOK")
    # 202 after the timeout; 200 when the immediate retry (jitter from 0 s) delivered before the
    # waiting call looked again. Either way the attempt log tells what happened.
    assert response.status_code in (200, 202), response.text
    assert response.json()["acknowledged"] is (response.status_code == 200)
    delivery = wait_state(tenant, response.json()["delivery_id"], "DELIVERED")
    webhook.release()
    assert outcomes(delivery) == ["TIMEOUT", "DELIVERED"]
    assert delivery["attempts"][0]["error"] == "WEBHOOK is unavailable: timed out"
    assert list(webhook.deliveries) == [f"dispatch:WEBHOOK:{eid}"]
    # Both attempts carried the same delivery id, so a receiver can drop the repeat.
    assert [r.headers["webhook-id"] for r in webhook.requests] == [delivery["id"]] * 2


def test_the_circuit_breaker_stops_calling_a_failing_target(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(*[Drop() for _ in range(5)])  # 5 failed attempts open this tenant's WEBHOOK circuit
    first, second = tenant.exceptions(2)
    response = tenant.dispatch(first, "WEBHOOK")
    assert response.status_code == 202, response.text
    first_id = response.json()["delivery_id"]
    wait_for(lambda: len(get_delivery(tenant, first_id)["attempts"]) >= 5, what="five failed attempts")
    assert webhook.count("POST", "/") == 5
    # The circuit is open (for DISPATCH_BREAKER_RESET_SECONDS): the next attempt does not call.
    response = tenant.dispatch(second, "WEBHOOK")
    assert response.status_code == 202, response.text
    second_id = response.json()["delivery_id"]
    not_called = "WEBHOOK is unavailable: circuit open after repeated failures; not called"
    attempt = get_delivery(tenant, second_id)["attempts"][0]
    assert attempt["error"] == not_called
    assert attempt["outcome"] == "RETRYABLE_ERROR" and attempt.get("http_status") is None
    # After the reset a trial attempt goes through, delivers, and closes the circuit for the other.
    attempts = [a for d in (first_id, second_id) for a in wait_state(tenant, d, "DELIVERED")["attempts"]]
    assert len(webhook.deliveries) == 2
    # Every attempt the open circuit stopped (however many the retries made) called nobody.
    assert webhook.count("POST", "/") == sum(1 for a in attempts if a.get("error") != not_called)


def test_a_dispatch_while_its_delivery_is_in_flight_joins_it(tenant, webhook):
    """Was: 409 DISPATCH_IN_PROGRESS. Now the delivery row is the one source of truth: the second
    call joins the delivery under way (docs/delivery.md), and there is still one ticket."""
    use_webhook(tenant, webhook)
    webhook.cue(Stall())
    [eid] = tenant.exceptions(1)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(tenant.dispatch(eid, "WEBHOOK")))
    worker.start()
    try:
        wait_for(lambda: webhook.count("POST", "/") > 0, what="the first attempt")
        second = tenant.dispatch(eid, "WEBHOOK")
    finally:
        webhook.release()
        worker.join()
    assert first[0].status_code in (200, 202) and second.status_code in (200, 202), second.text
    delivery_id = first[0].json()["delivery_id"]
    assert second.json()["delivery_id"] == delivery_id
    wait_state(tenant, delivery_id, "DELIVERED")
    assert [d["id"] for d in deliveries_of(tenant, eid)] == [delivery_id]
    assert len(webhook.deliveries) == 1


def test_idempotent_dispatch_replays_without_calling_again(tenant, jira):
    use_jira(tenant, jira)
    [eid] = tenant.exceptions(1)
    key = f"dispatch-{uuid.uuid4().hex}"
    first = tenant.dispatch(eid, "JIRA", queue="OPS", **{"Idempotency-Key": key})
    again = tenant.dispatch(eid, "JIRA", queue="OPS", **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert (
        first.headers["x-idempotency-replayed"] == "false"
        and again.headers["x-idempotency-replayed"] == "true"
    )
    assert again.json() == first.json() and jira.count("POST", "/") == 1


def test_dispatch_inside_a_keyed_bulk_request_runs_in_its_transaction(tenant, jira):
    """/v1/bulk with a key: one transaction for every sub-request (savepoints). The dispatch's
    delivery joins it (no side commit that would wait for it on SQLite) and the sub-request answers
    at once, 202: nothing can be delivered before the batch commits (docs/delivery.md)."""
    use_jira(tenant, jira)
    [eid] = tenant.exceptions(1)
    requests = [
        {
            "method": "POST",
            "url": "/v1/exceptions/bulk/assign",
            "data": {"exception_ids": [eid], "assignee": "ana"},
        },
        {
            "method": "POST",
            "url": f"/v1/exceptions/{eid}/dispatch",
            "data": {"target_system": "JIRA", "queue": "OPS"},
        },
    ]
    response = tenant.http.post(
        "/v1/bulk", json={"requests": requests}, headers={"Idempotency-Key": f"bulk-{uuid.uuid4().hex}"}
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["status"] for r in results] == [200, 202], results
    scheduled = results[1]["contents"]
    assert scheduled["acknowledged"] is False and scheduled["external_reference"] == ""
    delivery = wait_state(tenant, scheduled["delivery_id"], "DELIVERED")
    assert delivery["external_reference"] == "OPS-1" and len(jira.issues) == 1
    exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
    assert exception["assigned_to"] == "ana" and exception["external_issue_id"] == "OPS-1"
