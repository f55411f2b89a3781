"""A server killed (SIGKILL) after the target created the ticket and before the database recorded
it; the retry after the restart finds the pending dispatch, asks the target, and adopts the ticket
instead of creating a second one."""

from __future__ import annotations

import os
import signal
import time

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import dispatches
from tests.e2e.conftest import error_reason
from tests.support.databases import database_urls
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import After, JiraStandIn, ServiceNowStandIn

CLAIM_TIMEOUT = 2  # a claim older than this belongs to a dead attempt


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("crash")
    with (
        request.param(work) as url,
        dispatch_stack(url, work, DISPATCH_CLAIM_TIMEOUT_SECONDS=str(CLAIM_TIMEOUT)) as s,
    ):
        yield s


def pending_rows(stack, tenant: Tenant) -> list:
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            query = sa.select(dispatches).where(dispatches.c.tenant_id == tenant.id)
            return [r for r in conn.execute(query) if r.completed_at is None]
    finally:
        engine.dispose()


def kill_server(stack):
    os.kill(stack.server_process.pid, signal.SIGKILL)


def retry_until_claim_expires(call):
    """A dead attempt's claim keeps the dispatch 'in progress' (409 + Retry-After) until it expires."""
    for _ in range(10):
        response = call()
        if response.status_code == 409:  # single dispatch: the whole call
            assert error_reason(response) == "DISPATCH_IN_PROGRESS"
            time.sleep(int(response.headers["retry-after"]))
        elif any(f["reason"] == "DISPATCH_IN_PROGRESS" for f in response.json().get("failed", [])):
            time.sleep(CLAIM_TIMEOUT)  # bulk: per item
        else:
            return response
    raise AssertionError("the claim never expired")


@pytest.mark.parametrize("target", ["JIRA", "JIRA-bulk", "SERVICENOW"])
def test_a_crash_after_the_call_leaves_no_second_ticket(stack, target):
    tenant = Tenant(stack)
    jira, servicenow = JiraStandIn(), ServiceNowStandIn()
    try:
        if target.startswith("JIRA"):
            standin, count = jira, lambda: len(jira.issues)
            tenant.configure("JIRA", base_url=jira.url, email=jira.email, api_token=jira.token)
        else:
            standin, count = servicenow, lambda: len(servicenow.records)
            tenant.configure(
                "SERVICENOW",
                instance_url=servicenow.url,
                username=servicenow.username,
                password=servicenow.password,
            )
        name = target.split("-")[0]
        ids = tenant.exceptions(3 if target.endswith("bulk") else 1)
        standin.cue(After(lambda: kill_server(stack), method="POST"))  # created, then the server dies

        def call():
            if len(ids) > 1:
                return tenant.bulk_dispatch(ids, name, queue="OPS")
            return tenant.dispatch(ids[0], name, queue="OPS")

        died = call()
        assert died.status_code == 503  # Envoy: the upstream went away mid-call
        created = count()
        assert created == len(ids)
        assert len(pending_rows(stack, tenant)) == len(ids)  # recorded before the call, never completed
        stack.stop_server()
        stack.start_server()

        response = retry_until_claim_expires(call)
        assert response.status_code == 200, response.text
        if len(ids) > 1:
            assert response.json()["succeeded"] == ids, response.text
        assert count() == created  # adopted, not created again
        assert standin.violations == []
        references = set()
        for eid in ids:
            exception = tenant.http.get(f"/v1/exceptions/{eid}").json()
            assert exception["external_system"] == name
            references.add(exception["external_issue_id"])
        assert len(references) == len(ids)
        assert pending_rows(stack, tenant) == []
    finally:
        jira.close()
        servicenow.close()
        tenant.close()
