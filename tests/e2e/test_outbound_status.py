"""Outbound status (API.md §9) through Envoy, the server, its database and the delivery workers:
resolving dispatched exceptions comments on (and transitions) their JIRA issues, resolves their
ServiceNow incidents and sends `exception.resolved` to webhooks, once each, even across a worker
killed mid-attempt; a resolution that came from a system is not echoed back to it."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack, wait_for, wait_state
from tests.support.dispatch import Tenant
from tests.support.standins import (
    Hold,
    JiraStandIn,
    ServiceNowStandIn,
    WebhookReceiver,
    jira_issue_updated,
)


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("outbound")
    with request.param(work) as url, delivery_stack(url, work) as running:
        yield running


@pytest.fixture
def systems():
    with JiraStandIn() as jira, ServiceNowStandIn() as servicenow, WebhookReceiver() as webhook:
        yield jira, servicenow, webhook
        for standin in (jira, servicenow, webhook):
            assert standin.violations == []


def configure(tenant: Tenant, jira, servicenow, webhook, inbound_secret: str = "inbound-secret-0123456789"):
    jira_put = tenant.configure(
        "JIRA",
        base_url=jira.url,
        email=jira.email,
        api_token=jira.token,
        project_key="OPS",
        resolve_transition_id="31",
        inbound_secret=inbound_secret,
    )
    assert jira_put.json()["resolve_transition_id"] == "31"
    tenant.configure(
        "SERVICENOW",
        instance_url=servicenow.url,
        username=servicenow.username,
        password=servicenow.password,
        resolve_close_code="Solved (Work Around)",
    )
    tenant.configure("WEBHOOK", url=webhook.url, secret=webhook.secret)
    return jira_put.json()["inbound_path"]


def dispatch(tenant: Tenant, ids: list[str], target: str) -> dict[str, str]:
    response = tenant.bulk_dispatch(ids, target)
    assert response.status_code == 200 and response.json()["failed"] == [], response.text
    return {eid: tenant.http.get(f"/v1/exceptions/{eid}").json()["external_issue_id"] for eid in ids}


def resolutions(tenant: Tenant, exception_id: str) -> list[dict]:
    items = tenant.http.get(f"/v1/exceptions/{exception_id}/deliveries").json()["items"]
    return [d for d in items if d["kind"] == "RESOLUTION"]


def bulk_resolve(tenant: Tenant, ids: list[str]) -> None:
    body = {"exception_ids": ids, "resolution": "fee refunded", "reason": "bank error"}
    response = tenant.http.post("/v1/exceptions/bulk/resolve", json=body)
    assert response.status_code == 200 and sorted(response.json()["succeeded"]) == sorted(ids), response.text


def test_bulk_resolve_comments_transitions_patches_and_notifies_once_each(stack, systems):
    jira, servicenow, webhook = systems
    tenant = Tenant(stack)
    try:
        path = configure(tenant, jira, servicenow, webhook)
        to_jira, to_servicenow, to_webhook = tenant.exceptions(2), tenant.exceptions(2), tenant.exceptions(1)
        keys = dispatch(tenant, to_jira, "JIRA")
        numbers = dispatch(tenant, to_servicenow, "SERVICENOW")
        dispatch(tenant, to_webhook, "WEBHOOK")
        bulk_resolve(tenant, to_jira + to_servicenow + to_webhook)
        for eid in to_jira + to_servicenow + to_webhook:
            (pushed,) = resolutions(tenant, eid)
            wait_state(tenant, pushed["id"], "DELIVERED")
        # JIRA answers our transition with its own issue_updated (Done): nothing changes, no loop.
        body, headers = jira_issue_updated(jira, keys[to_jira[0]], "inbound-secret-0123456789")
        echoed = tenant.http.post(path, content=body, headers={**headers, "Authorization": ""})
        assert echoed.status_code == 200 and echoed.json()["status"] == "UNCHANGED", echoed.text
        assert len(resolutions(tenant, to_jira[0])) == 1
    finally:
        tenant.close()
    # JIRA: one comment per issue, carrying the resolution; then transition 31 (To Do -> Done).
    for key in keys.values():
        (comment,) = jira.comments[key]
        assert "fee refunded" in comment["body"] and "bank error" in comment["body"]
    assert sorted(jira.transitions) == sorted((key, "31") for key in keys.values())
    # ServiceNow: one PATCH per incident, to Resolved with the close code and notes.
    assert sorted(n for n, _ in servicenow.patches) == sorted(numbers.values())
    for _, fields in servicenow.patches:
        assert fields["state"] == "6" and fields["close_code"] == "Solved (Work Around)"
        assert "fee refunded" in fields["close_notes"]
    # Webhook: exception.resolved, verified by the reference library in the stand-in.
    resolved = [(kind, data) for kind, _, data in webhook.events if kind == "exception.resolved"]
    assert [data["exception"]["id"] for _, data in resolved] == to_webhook
    assert resolved[0][1]["exception"]["status"] == "RESOLVED"


def test_a_resolution_from_jira_is_not_echoed_to_jira_but_reaches_the_webhook(stack, systems):
    jira, servicenow, webhook = systems
    tenant = Tenant(stack)
    secret = "inbound-secret-for-echo-test"
    try:
        path = configure(tenant, jira, servicenow, webhook, inbound_secret=secret)
        (eid,) = tenant.exceptions(1)
        dispatch(tenant, [eid], "WEBHOOK")
        key = dispatch(tenant, [eid], "JIRA")[eid]
        body, headers = jira_issue_updated(jira, key, secret, resolution="Done")
        answer = tenant.http.post(path, content=body, headers={**headers, "Authorization": ""})
        assert answer.status_code == 200 and answer.json()["status"] == "APPLIED", answer.text
        (pushed,) = resolutions(tenant, eid)  # one: to the webhook; none back to JIRA
        assert pushed["target_system"] == "WEBHOOK"
        wait_state(tenant, pushed["id"], "DELIVERED")
    finally:
        tenant.close()
    assert jira.comments.get(key, []) == [] and jira.transitions == []
    assert [kind for kind, _, _ in webhook.events] == ["exception.dispatched", "exception.resolved"]


@pytest.fixture(params=database_urls())
def database_url(request, tmp_path):
    with request.param(tmp_path) as url:
        yield url


def test_resolutions_are_pushed_exactly_once_across_a_worker_killed_mid_attempt(database_url, tmp_path):
    # The first server's lease outlives the moment it is killed; the restarted one's is short.
    first_run = {"DELIVERY_ATTEMPT_TIMEOUT": "3", "DELIVERY_LEASE_MARGIN_SECONDS": "1"}
    with (
        delivery_stack(database_url, tmp_path, **first_run) as stack,
        JiraStandIn() as jira,
        ServiceNowStandIn() as servicenow,
        WebhookReceiver() as webhook,
    ):
        tenant = Tenant(stack)
        try:
            configure(tenant, jira, servicenow, webhook)
            to_jira, to_servicenow = tenant.exceptions(2), tenant.exceptions(2)
            keys = dispatch(tenant, to_jira, "JIRA")
            numbers = dispatch(tenant, to_servicenow, "SERVICENOW")
            jira.cue(Hold(method="POST", path=f"/rest/api/2/issue/{keys[to_jira[0]]}/comment"))
            servicenow.cue(Hold(method="PATCH"))
            bulk_resolve(tenant, to_jira + to_servicenow)
            wait_for(
                lambda: (
                    jira.count("POST", f"/rest/api/2/issue/{keys[to_jira[0]]}/comment") == 1
                    and servicenow.count("PATCH", "/") >= 1
                ),  # the first one is held
                15,
                "a comment and a PATCH held",
            )
            server = stack.server_process
            assert server is not None
            os.kill(server.pid, signal.SIGKILL)
            assert server.wait(timeout=10) == -signal.SIGKILL
            jira.release()
            servicenow.release()  # the held comment and PATCH land; their answers reach no one
            held = keys[to_jira[0]]
            wait_for(lambda: len(servicenow.patches) >= 1 and jira.comments.get(held), 10, "held calls done")
            stack.extra_env.update({"DELIVERY_ATTEMPT_TIMEOUT": "1", "DELIVERY_LEASE_MARGIN_SECONDS": "1"})
            stack.stop_server()
            stack.start_server()
            for eid in to_jira + to_servicenow:
                (pushed,) = resolutions(tenant, eid)
                wait_state(tenant, pushed["id"], "DELIVERED", timeout=30)
        finally:
            tenant.close()
        for key in keys.values():
            assert len(jira.comments[key]) == 1, (key, jira.comments[key])
        assert sorted(jira.transitions) == sorted((key, "31") for key in keys.values())
        assert sorted(n for n, _ in servicenow.patches) == sorted(numbers.values())
        assert jira.violations == servicenow.violations == []
