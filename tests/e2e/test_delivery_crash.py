"""kill -9 of the server while its delivery workers have attempts out (API.md §7, docs/delivery.md).

Each target (JIRA, ServiceNow, a signed webhook) holds the create request; the server process is
SIGKILLed with the three attempts in flight; the targets then do the work (the tickets exist, the
answers reach no one); the server restarts with a short lease. The dead worker's leases expire, the
next claim logs the lost attempt (TIMEOUT, "its worker stopped") and asks the target first: JIRA by
label, ServiceNow by correlation_id, and the webhook gets the same webhook-id again (its receiver
drops the repeat). One ticket per exception, never two.
"""

from __future__ import annotations

import os
import signal

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import deliveries
from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack, outcomes, wait_for, wait_state
from tests.support.dispatch import Tenant
from tests.support.standins import Hold, JiraStandIn, ServiceNowStandIn, WebhookReceiver


@pytest.fixture(params=database_urls())
def database_url(request, tmp_path):
    with request.param(tmp_path) as url:
        yield url


def states(database_url: str, tenant_id: str) -> list[str]:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            query = sa.select(deliveries.c.state).where(deliveries.c.tenant_id == tenant_id)
            return sorted(r.state for r in conn.execute(query))
    finally:
        engine.dispose()


def test_a_worker_killed_mid_attempt_leaves_one_ticket_per_exception(database_url, tmp_path):
    # The first server's lease (deadline 3 s + margin 1 s) outlives the moment it is killed; the
    # restarted one uses the short lease the brief asks for.
    first_run = {
        "DELIVERY_ATTEMPT_TIMEOUT": "3",
        "DELIVERY_LEASE_MARGIN_SECONDS": "1",
        "DISPATCH_WAIT_SECONDS": "0",
    }
    with (
        delivery_stack(database_url, tmp_path, **first_run) as stack,
        JiraStandIn() as jira,
        ServiceNowStandIn() as servicenow,
        WebhookReceiver() as webhook,
    ):
        tenant = Tenant(stack)
        try:
            tenant.configure("JIRA", base_url=jira.url, email=jira.email, api_token=jira.token)
            tenant.configure(
                "SERVICENOW",
                instance_url=servicenow.url,
                username=servicenow.username,
                password=servicenow.password,
            )
            tenant.configure("WEBHOOK", url=webhook.url, secret=webhook.secret)
            to_jira, to_servicenow, to_webhook = tenant.exceptions(3)
            standins = (jira, servicenow, webhook)
            for standin in standins:
                standin.cue(Hold(method="POST"))
            jobs = (
                (to_jira, "JIRA", "OPS"),
                (to_servicenow, "SERVICENOW", "Finance"),
                (to_webhook, "WEBHOOK", ""),
            )
            delivery_ids = {}
            for eid, target, queue in jobs:
                response = tenant.dispatch(eid, target, queue=queue)
                assert response.status_code == 202, response.text  # DISPATCH_WAIT_SECONDS=0
                delivery_ids[target] = response.json()["delivery_id"]
            wait_for(lambda: all(s.count("POST", "/") == 1 for s in standins), 10, "the three creates out")

            server = stack.server_process
            assert server is not None
            os.kill(server.pid, signal.SIGKILL)
            assert server.wait(timeout=10) == -signal.SIGKILL
            assert states(stack.database_url, tenant.id) == ["IN_FLIGHT"] * 3  # leased to the dead worker
            for standin in standins:
                standin.release()  # the targets finish the work; the answers reach no one
            wait_for(
                lambda: len(jira.issues) == len(servicenow.records) == len(webhook.deliveries) == 1,
                10,
                "the held creates done",
            )

            stack.extra_env.update({"DELIVERY_ATTEMPT_TIMEOUT": "1", "DELIVERY_LEASE_MARGIN_SECONDS": "1"})
            stack.stop_server()
            stack.start_server()

            final = {
                target: wait_state(tenant, did, "DELIVERED", timeout=30)
                for target, did in delivery_ids.items()
            }
        finally:
            tenant.close()

        for target, delivery in final.items():
            assert outcomes(delivery) == ["TIMEOUT", "DELIVERED"], (target, delivery)
            lost = delivery["attempts"][0]
            assert lost["number"] == 1 and "worker stopped" in lost["error"], (target, lost)
            assert lost.get("http_status") is None

        # JIRA: the retry searched by the dispatch label and adopted the issue.
        [(key, issue)] = jira.issues.items()
        assert issue["fields"]["labels"] == [f"dispatch:JIRA:{to_jira}:OPS"]
        assert final["JIRA"]["external_reference"] == key
        assert jira.count("POST", "/rest/api/2/issue") == 1 and jira.count("GET", "/rest/api/2/search") >= 1
        # ServiceNow: found by correlation_id.
        [record] = servicenow.records
        assert final["SERVICENOW"]["external_reference"] == record["number"]
        assert servicenow.count("POST", "/") == 1 and servicenow.count("GET", "/") >= 1
        # Webhook: sent again with the same webhook-id (the delivery id); the receiver kept one.
        ids = [r.headers.get("webhook-id") for r in webhook.requests]
        assert len(ids) == 2 and ids[0] == ids[1] == delivery_ids["WEBHOOK"], ids
        keys = [r.headers.get("x-idempotency-key") for r in webhook.requests]
        assert keys[0] == keys[1] and len(webhook.deliveries) == 1 and webhook.repeats == 1
        for standin in standins:
            assert standin.violations == []
