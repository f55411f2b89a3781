"""A server killed (SIGKILL) after the target created the ticket and before the delivery recorded
it. After the restart the dead worker's lease expires, the lost attempt is logged (TIMEOUT), and the
next attempt asks the target first (JIRA label search, ServiceNow correlation_id) and adopts the
ticket instead of creating a second one. Retrying the call joins the same deliveries and answers
from their state (docs/delivery.md, "One source of truth"), never "in progress"."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.databases import database_urls
from tests.support.deliveries import deliveries_of, outcomes, wait_state
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import After, JiraStandIn, ServiceNowStandIn

LOST = "the attempt did not finish: its worker stopped and the lease expired"


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    # TUNED_ENV: a 2 s attempt deadline plus a 2 s lease margin, so a dead worker's lease expires soon.
    work = tmp_path_factory.mktemp("crash")
    with request.param(work) as url, dispatch_stack(url, work) as s:
        yield s


def kill_server(stack):
    os.kill(stack.server_process.pid, signal.SIGKILL)


@pytest.mark.parametrize("target", ["JIRA", "JIRA-bulk", "SERVICENOW"])
def test_a_crash_after_the_call_leaves_no_second_ticket(stack, target):
    tenant = Tenant(stack)
    jira, servicenow = JiraStandIn(), ServiceNowStandIn()
    try:
        if target.startswith("JIRA"):
            standin, count = jira, lambda: len(jira.issues)
            searches = lambda: jira.count("GET", "/rest/api/2/search")  # noqa: E731
            tenant.configure("JIRA", base_url=jira.url, email=jira.email, api_token=jira.token)
        else:
            standin, count = servicenow, lambda: len(servicenow.records)
            searches = lambda: servicenow.count("GET", "/api/now/table/")  # noqa: E731
            tenant.configure(
                "SERVICENOW",
                instance_url=servicenow.url,
                username=servicenow.username,
                password=servicenow.password,
            )
        name = target.split("-")[0]
        bulk = target.endswith("bulk")
        ids = tenant.exceptions(3 if bulk else 1)
        standin.cue(After(lambda: kill_server(stack), method="POST"))  # created, then the server dies

        def call():
            if bulk:
                return tenant.bulk_dispatch(ids, name, queue="OPS")
            return tenant.dispatch(ids[0], name, queue="OPS")

        died = call()
        assert died.status_code == 503  # Envoy: the upstream went away mid-call
        assert stack.server_process.wait(timeout=30) == -signal.SIGKILL
        # The killing attempt's ticket exists; a bulk's other deliveries may have been sent meanwhile.
        created = count()
        assert 1 <= created <= len(ids)
        stack.stop_server()
        stack.start_server()

        # The retry joins the recorded deliveries: delivered, or scheduled with the delivery id.
        response = call()
        assert response.status_code in (200, 202), response.text
        body = response.json()
        if bulk:
            assert body["total"] == len(ids)
            assert all(f["reason"] == "DELIVERY_SCHEDULED" and f["delivery_id"] for f in body["failed"]), body
            assert sorted(body["succeeded"] + [f["exception_id"] for f in body["failed"]]) == sorted(ids)
        else:
            assert body["acknowledged"] is (response.status_code == 200) and body["delivery_id"]

        finished = []
        for eid in ids:
            [delivery] = deliveries_of(tenant, eid)  # one delivery per exception, never a second
            finished.append(wait_state(tenant, delivery["id"], "DELIVERED"))
        assert count() == len(ids)  # exactly one ticket per exception: the crashed one was adopted
        assert standin.violations == []
        lost = [d for d in finished if "TIMEOUT" in outcomes(d)]
        assert lost and all(
            a["error"] == LOST for d in lost for a in d["attempts"] if a["outcome"] == "TIMEOUT"
        )
        assert searches() >= 1  # the attempt after the unknown outcome asked the target first
        if not bulk:
            [delivery] = finished
            assert outcomes(delivery) == ["TIMEOUT", "DELIVERED"]
            assert searches() == 1 and created == 1
        references = set()
        for eid, delivery in zip(ids, finished, strict=True):
            exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
            assert exception["external_system"] == name
            assert exception["external_issue_id"] == delivery["external_reference"]
            references.add(exception["external_issue_id"])
        assert len(references) == len(ids)
    finally:
        jira.close()
        servicenow.close()
        tenant.close()
