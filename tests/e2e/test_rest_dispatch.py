"""Dispatch to JIRA, ServiceNow and signed webhooks end to end: REST through Envoy, the real server,
loopback stand-ins that check every request against the documented API and fail on cue."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import targets as targets_table
from tests.e2e.conftest import error_reason, violation_fields
from tests.support.databases import database_urls
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import Drop, JiraStandIn, Respond, ServiceNowStandIn, Stall, WebhookReceiver

SECRETS: set[str] = set()  # every secret any test configured: none may reach a response or a log


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("dispatch")
    with request.param(work) as url, dispatch_stack(url, work) as running:
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
        f"whsec-{uuid.uuid4().hex}",
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
            lambda t: t.http.put("/v1/targets/WEBHOOK", json={"url": webhook.url, "secret": "s" * 20}),
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
    assert history[-1]["changes"] == {"target_system": "JIRA", "queue": "OPS", "external_reference": "OPS-1"}
    assert jira.issues["OPS-1"]["fields"]["priority"] == {"name": "Highest"}
    # Again: the recorded issue, not a second one.
    assert tenant.dispatch(eid, "JIRA", queue="OPS").json()["external_reference"] == "OPS-1"
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
    assert jira.count("POST", "/rest/api/2/issue/bulk") == 2  # 100 items, at most 50 per call
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
    # The two new incidents are created concurrently (DISPATCH_POOL_SIZE), so which gets which number
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
    assert response.status_code == 200, response.text
    assert webhook.count("POST", "/") == 3 and len(webhook.deliveries) == 1


def test_single_dispatch_failing_after_retries_is_502_and_can_be_retried(tenant, jira):
    use_jira(tenant, jira)
    jira.cue(*[Respond(503, {"errorMessages": ["maintenance"]}) for _ in range(3)])
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "JIRA", queue="OPS")
    assert response.status_code == 502 and error_reason(response) == "TARGET_UNAVAILABLE"
    assert response.json()["message"] == "JIRA is unavailable: answered 503 (3 attempts)"
    assert_clean(response, jira.url)
    retried = tenant.dispatch(eid, "JIRA", queue="OPS")
    assert retried.status_code == 200 and len(jira.issues) == 1


def test_timeouts_then_a_retry_that_delivers_once(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(Stall(), Stall(), Stall())
    [eid] = tenant.exceptions(1)
    response = tenant.dispatch(eid, "WEBHOOK")
    assert response.status_code == 502 and response.json()["message"] == (
        "WEBHOOK is unavailable: timed out (3 attempts)"
    )
    webhook.release()
    assert tenant.dispatch(eid, "WEBHOOK").status_code == 200
    assert list(webhook.deliveries) == [f"dispatch:WEBHOOK:{eid}"]


def test_the_circuit_breaker_stops_calling_a_failing_host(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(*[Drop() for _ in range(5)])  # the breaker opens after 5 failed calls to one host
    first, second, third = tenant.exceptions(3)
    assert tenant.dispatch(first, "WEBHOOK").json()["message"] == (
        "WEBHOOK is unavailable: connection dropped (3 attempts)"
    )
    assert tenant.dispatch(second, "WEBHOOK").status_code == 502
    seen = webhook.count("POST", "/")
    assert seen == 5
    response = tenant.dispatch(third, "WEBHOOK")
    assert response.status_code == 502
    assert (
        response.json()["message"]
        == "WEBHOOK is unavailable: circuit open after repeated failures; not called"
    )
    assert webhook.count("POST", "/") == seen


def test_a_dispatch_in_progress_is_not_started_twice(tenant, webhook):
    use_webhook(tenant, webhook)
    webhook.cue(Stall())
    [eid] = tenant.exceptions(1)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(tenant.dispatch(eid, "WEBHOOK")))
    worker.start()
    try:
        while webhook.count("POST", "/") == 0:
            worker.join(0.05)
        second = tenant.dispatch(eid, "WEBHOOK")
        assert second.status_code == 409 and error_reason(second) == "DISPATCH_IN_PROGRESS"
        assert int(second.headers["retry-after"]) > 0
    finally:
        webhook.release()
        worker.join()
    assert first[0].status_code == 200  # the second attempt (after the stall) delivered it
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
    """/v1/bulk with a key: one transaction for every sub-request (savepoints). The dispatch then
    stays inside it (no side commits that would wait for it on SQLite) and asks JIRA first."""
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
    assert [r["status"] for r in results] == [200, 200], results
    assert results[1]["contents"]["external_reference"] == "OPS-1"
    assert jira.count("GET", "/rest/api/2/search") == 1 and len(jira.issues) == 1
    exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
    assert exception["assigned_to"] == "ana" and exception["external_issue_id"] == "OPS-1"
