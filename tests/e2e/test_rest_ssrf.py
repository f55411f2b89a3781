"""The SSRF guard with DISPATCH_ALLOW_PRIVATE_NETWORKS off (the default outside tests): target URLs
must be https and public, when configured and again when connecting."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import error_reason, violation_fields
from tests.support.databases import database_urls
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import WebhookReceiver


@pytest.fixture(scope="module", params=database_urls()[:1])  # the database plays no part here
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("ssrf")
    with request.param(work) as url, dispatch_stack(url, work, DISPATCH_ALLOW_PRIVATE_NETWORKS="false") as s:
        yield s


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",  # plain http
        "https://127.0.0.1/in",
        "https://localhost/in",  # a name that resolves to loopback
        "https://169.254.169.254/latest/meta-data",  # the cloud metadata service (link-local)
        "https://[::1]/in",
        "https://[::ffff:127.0.0.1]/in",  # IPv4-mapped loopback
        "https://[64:ff9b::a9fe:a9fe]/in",  # NAT64 form of 169.254.169.254
        "https://10.1.2.3/in",
        "https://192.168.0.10/in",
        "https://100.64.0.1/in",  # shared address space
        "https://0.0.0.0/in",
    ],
)
def test_private_or_plain_http_urls_are_refused_when_configured(stack, url):
    tenant = Tenant(stack)
    try:
        response = tenant.http.put("/v1/targets/WEBHOOK", json={"url": url})
        assert response.status_code == 400, response.text
        assert error_reason(response) == "INVALID_ARGUMENT" and violation_fields(response) == {"url"}
        jira = tenant.http.put("/v1/targets/JIRA", json={"base_url": url, "api_token": "t"})
        assert jira.status_code == 400 and violation_fields(jira) == {"base_url"}
    finally:
        tenant.close()


def test_a_target_that_became_private_is_refused_when_connecting(stack):
    """Configured while private networks were allowed, dispatched after they were turned off: the
    connection itself is refused, nothing reaches the address."""
    tenant = Tenant(stack)
    try:
        with WebhookReceiver() as receiver:
            stack.extra_env["DISPATCH_ALLOW_PRIVATE_NETWORKS"] = "true"
            stack.stop_server()
            stack.start_server()
            tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)
            stack.extra_env["DISPATCH_ALLOW_PRIVATE_NETWORKS"] = "false"
            stack.stop_server()
            stack.start_server()
            [eid] = tenant.exceptions(1)
            response = tenant.dispatch(eid, "WEBHOOK")
            assert response.status_code == 422 and error_reason(response) == "TARGET_ADDRESS_NOT_ALLOWED"
            assert "127.0.0.1" not in response.text
            assert receiver.requests == []
            bulk = tenant.bulk_dispatch([eid], "WEBHOOK").json()
            assert bulk["failed"][0]["reason"] == "TARGET_ADDRESS_NOT_ALLOWED"
            assert receiver.requests == []
    finally:
        tenant.close()
