"""Inbound status from JIRA's and ServiceNow's own webhooks (API.md §9), through Envoy, the server
and its database: no bearer token, the HMAC over the raw body checked first, repeats applied once,
tampered or foreign-signed posts refused, unknown tickets accepted and ignored, CALLBACK history
naming the system, body and rate limits."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack
from tests.support.dispatch import Tenant
from tests.support.standins import (
    JiraStandIn,
    ServiceNowStandIn,
    hub_signature,
    jira_issue_updated,
    servicenow_business_rule_post,
)

HOOK_RATE = 20


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("hooks")
    env = {"RATE_LIMIT_HOOKS_PER_MINUTE": str(HOOK_RATE), "HOOK_MAX_BODY_BYTES": "65536"}
    with request.param(work) as url, delivery_stack(url, work, **env) as running:
        yield running


@pytest.fixture(scope="module")
def jira():
    with JiraStandIn() as s:
        yield s
        assert s.violations == []


@pytest.fixture(scope="module")
def servicenow():
    with ServiceNowStandIn() as s:
        yield s
        assert s.violations == []


@pytest.fixture
def anonymous(stack):
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client


class Linked:
    """A tenant with JIRA and ServiceNow configured (inbound secrets set) and dispatched exceptions."""

    def __init__(self, stack, jira: JiraStandIn, servicenow: ServiceNowStandIn) -> None:
        self.tenant = Tenant(stack)
        self.secret = f"inbound-{uuid.uuid4().hex}"
        jira_put = self.tenant.configure(
            "JIRA",
            base_url=jira.url,
            email=jira.email,
            api_token=jira.token,
            project_key="OPS",
            inbound_secret=self.secret,
        ).json()
        sn_put = self.tenant.configure(
            "SERVICENOW",
            instance_url=servicenow.url,
            username=servicenow.username,
            password=servicenow.password,
            inbound_secret=self.secret,
        ).json()
        assert "inbound_secret" in jira_put["configured_secrets"] and self.secret not in str(jira_put)
        self.jira_path, self.sn_path = jira_put["inbound_path"], sn_put["inbound_path"]
        assert self.jira_path.startswith("/v1/hooks/jira/")
        assert self.sn_path.startswith("/v1/hooks/servicenow/")

    def dispatched(self, target: str) -> tuple[str, str]:
        (exception_id,) = self.tenant.exceptions(1)
        response = self.tenant.dispatch(exception_id, target)
        assert response.status_code == 200, response.text
        return exception_id, response.json()["external_reference"]

    def get(self, exception_id: str) -> dict:
        return self.tenant.http.get(f"/v1/exceptions/{exception_id}").json()

    def callbacks(self, exception_id: str) -> list[dict]:
        items = self.tenant.http.get(f"/v1/exceptions/{exception_id}/history").json()["items"]
        return [i for i in items if i["action"] == "CALLBACK"]


@pytest.fixture
def linked(stack, jira, servicenow):
    world = Linked(stack, jira, servicenow)
    yield world
    world.tenant.close()


def test_jira_done_resolves_with_the_resolution_name_and_a_replay_is_applied_once(linked, jira, anonymous):
    exception_id, key = linked.dispatched("JIRA")
    body, headers = jira_issue_updated(jira, key, linked.secret, resolution="Won't Do")
    first = anonymous.post(linked.jira_path, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "APPLIED", "exception_ids": [exception_id]}
    after = linked.get(exception_id)
    assert (after["status"], after["resolution_notes"]) == ("RESOLVED", "Won't Do")
    (callback,) = linked.callbacks(exception_id)
    assert callback["actor_id"] == "hook:JIRA" and callback["changes"]["external_system"] == "JIRA"
    assert callback["changes"]["external_issue_id"] == key
    # JIRA retries with the same X-Atlassian-Webhook-Identifier: acknowledged, not applied again.
    again = anonymous.post(linked.jira_path, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "DUPLICATE"
    assert len(linked.callbacks(exception_id)) == 1


def test_jira_assignee_assigns(linked, jira, anonymous):
    exception_id, key = linked.dispatched("JIRA")
    body, headers = jira_issue_updated(
        jira, key, linked.secret, category="indeterminate", status="Doing", resolution=None, assignee="Ana"
    )
    response = anonymous.post(linked.jira_path, content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "APPLIED", response.text
    after = linked.get(exception_id)
    assert (after["status"], after["assigned_to"]) == ("ASSIGNED", "Ana")


def test_servicenow_state_6_resolves_with_the_close_notes(linked, servicenow, anonymous):
    exception_id, number = linked.dispatched("SERVICENOW")
    (record,) = [r for r in servicenow.records if r["number"] == number]
    body, headers = servicenow_business_rule_post(
        record, linked.secret, state="2", assigned_to="Beth Analyst", updated_on="2026-12-01 10:00:00"
    )
    assert anonymous.post(linked.sn_path, content=body, headers=headers).json()["status"] == "APPLIED"
    assert linked.get(exception_id)["assigned_to"] == "Beth Analyst"
    body, headers = servicenow_business_rule_post(
        record, linked.secret, state="6", close_notes="Fee reversed", updated_on="2026-12-01 11:00:00"
    )
    response = anonymous.post(linked.sn_path, content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "APPLIED", response.text
    # The rule re-sent for the same update (same sys_id and sys_updated_on): applied once.
    again = anonymous.post(linked.sn_path, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "DUPLICATE", again.text
    after = linked.get(exception_id)
    assert (after["status"], after["resolution_notes"]) == ("RESOLVED", "Fee reversed")
    assert [c["actor_id"] for c in linked.callbacks(exception_id)] == ["hook:SERVICENOW"] * 2


def test_bad_missing_or_tampered_signatures_are_401_and_change_nothing(linked, jira, anonymous):
    exception_id, key = linked.dispatched("JIRA")
    body, headers = jira_issue_updated(jira, key, linked.secret)
    tampered = body.replace(b'"done"', b'"new"')
    assert tampered != body
    for content, sent in (
        (tampered, headers),  # the body changed after signing
        (body, {**headers, "X-Hub-Signature": hub_signature("another-secret-0123456789", body)}),
        (body, {k: v for k, v in headers.items() if k != "X-Hub-Signature"}),
        (body, {**headers, "X-Hub-Signature": "sha256=zz"}),
    ):
        response = anonymous.post(linked.jira_path, content=content, headers=sent)
        assert response.status_code == 401, response.text
        assert response.json()["details"][0]["reason"] == "UNAUTHENTICATED"
    # A bearer token of the tenant is no substitute for the signature.
    token_only = {"Authorization": f"Bearer {linked.tenant.token}", "Content-Type": "application/json"}
    assert anonymous.post(linked.jira_path, content=body, headers=token_only).status_code == 401
    # Not JSON, but signed: the signature passes, the body is refused as a 400.
    garbage = b"not json"
    signed = {**headers, "X-Hub-Signature": hub_signature(linked.secret, garbage)}
    assert anonymous.post(linked.jira_path, content=garbage, headers=signed).status_code == 400
    assert linked.get(exception_id)["status"] == "OPEN" and linked.callbacks(exception_id) == []


def test_a_ticket_the_tenant_never_dispatched_is_accepted_and_ignored(linked, jira, anonymous):
    body, headers = jira_issue_updated(jira, "OPS-99999", linked.secret)
    response = anonymous.post(linked.jira_path, content=body, headers=headers)
    assert response.status_code == 202 and response.json()["status"] == "IGNORED", response.text


def test_another_tenants_hook_id_with_a_valid_signature_of_this_tenants_secret_is_refused(
    stack, jira, servicenow, linked, anonymous
):
    other = Linked(stack, jira, servicenow)
    try:
        exception_id, key = linked.dispatched("JIRA")
        body, headers = jira_issue_updated(jira, key, linked.secret)
        # Signed with this tenant's secret, posted to the other tenant's hook.
        response = anonymous.post(other.jira_path, content=body, headers=headers)
        assert response.status_code == 401, response.text
        # And a ticket of this tenant, signed with the other tenant's secret at its own hook: ignored.
        body, headers = jira_issue_updated(jira, key, other.secret)
        response = anonymous.post(other.jira_path, content=body, headers=headers)
        assert response.status_code == 202 and response.json()["status"] == "IGNORED"
        assert linked.get(exception_id)["status"] == "OPEN"
        # A JIRA hook id at the ServiceNow route is no hook either.
        sn_body, sn_headers = servicenow_business_rule_post(
            {"number": key, "sys_id": "x"}, linked.secret, state="6"
        )
        wrong = "/v1/hooks/servicenow/" + linked.jira_path.rsplit("/", 1)[1]
        assert anonymous.post(wrong, content=sn_body, headers=sn_headers).status_code == 401
        assert anonymous.post("/v1/hooks/jira/no-such-hook", content=body, headers=headers).status_code == 401
    finally:
        other.tenant.close()


def test_hooks_have_a_body_limit_a_rate_limit_and_cannot_ride_in_v1_bulk(linked, jira, anonymous):
    huge = b'{"pad": "' + b"x" * 70000 + b'"}'
    signed = {"Content-Type": "application/json", "X-Hub-Signature": hub_signature(linked.secret, huge)}
    too_large = anonymous.post(linked.jira_path, content=huge, headers=signed)
    assert too_large.status_code == 413, too_large.text
    bulk = linked.tenant.http.post(
        "/v1/bulk", json={"requests": [{"method": "POST", "url": linked.jira_path, "data": "{}"}]}
    )
    assert bulk.status_code == 400, bulk.text
    body, headers = jira_issue_updated(jira, "OPS-1", linked.secret)
    post = lambda: anonymous.post(linked.jira_path, content=body, headers=headers).status_code  # noqa: E731
    statuses = [post() for _ in range(HOOK_RATE + 1)]
    assert statuses[-1] == 429 and 429 not in statuses[: HOOK_RATE - 1], statuses
