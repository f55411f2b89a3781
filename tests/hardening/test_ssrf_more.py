"""More SSRF attempts, extending tests/e2e/test_rest_ssrf.py (which has plain http, the loopback,
private, shared and metadata literals, ::1, IPv4-mapped and NAT64 forms, and a private URL refused at
connect time):
- other spellings of loopback and the metadata address that the resolver understands (decimal, hex,
  octal, short forms, trailing dots, ip6-localhost names, 6to4, IPv6 link-local and unique-local,
  multicast, broadcast, userinfo tricks) refused for every target system's URL field;
- host names resolving to loopback refused when connecting, for JIRA, ServiceNow and webhooks (the
  numeric spellings the resolver also reads, "127.1" or "2130706433", are refused at configuration
  whatever the policy: server/domain/targets.py url_problem);
- redirects to internal addresses never followed (even with private networks allowed)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import error_reason, violation_fields
from tests.support.databases import sqlite_database
from tests.support.dispatch import Tenant, dispatch_stack
from tests.support.standins import JiraStandIn, Respond, ServiceNowStandIn, WebhookReceiver

URL_FIELDS = {"WEBHOOK": "url", "JIRA": "base_url", "SERVICENOW": "instance_url"}


@pytest.fixture(scope="module")
def ssrf(tmp_path_factory):
    work = tmp_path_factory.mktemp("ssrf-more")
    with (
        sqlite_database(work) as url,
        dispatch_stack(url, work, DISPATCH_ALLOW_PRIVATE_NETWORKS="true") as stack,
    ):
        yield stack


@pytest.fixture
def redirect_tenant(ssrf):
    # One per test: each configures its own receiver, and the delivery workers may keep a tenant's
    # configuration for a few seconds (server/delivery/worker.py, CONFIG_CACHE_SECONDS).
    tenant = Tenant(ssrf)
    yield tenant
    tenant.close()


@pytest.fixture(scope="module")
def config_tenant(ssrf):
    tenant = Tenant(ssrf)
    yield tenant
    tenant.close()


def set_private(stack, allowed: bool) -> None:
    value = "true" if allowed else "false"
    if stack.extra_env.get("DISPATCH_ALLOW_PRIVATE_NETWORKS") != value:
        stack.extra_env["DISPATCH_ALLOW_PRIVATE_NETWORKS"] = value
        stack.stop_server()
        stack.start_server()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_to_internal_addresses_are_not_followed(ssrf, redirect_tenant, status):
    set_private(ssrf, True)  # even where private targets are allowed, a redirect is not followed
    tenant = redirect_tenant
    with WebhookReceiver() as hook, WebhookReceiver() as inside:
        tenant.configure("WEBHOOK", url=hook.url, secret=hook.secret)
        [eid] = tenant.exceptions(1)
        for location in (f"{inside.url}/admin", "http://169.254.169.254/latest/meta-data/"):
            # One request per attempt: the single dispatch's, then the bulk's (it tries the refused
            # delivery again). A redirect is a permanent refusal: 422 TARGET_REJECTED, not retried.
            hook.cue(*[Respond(status, headers={"Location": location})] * 2)
            response = tenant.dispatch(eid, "WEBHOOK")
            assert response.status_code == 422 and error_reason(response) == "TARGET_REJECTED", response.text
            assert "169.254" not in response.text and inside.url not in response.text
            bulk = tenant.bulk_dispatch([eid], "WEBHOOK").json()
            assert bulk["succeeded"] == [] and "169.254" not in str(bulk)
            assert [f["reason"] for f in bulk["failed"]] == ["TARGET_REJECTED"]
        assert inside.requests == []


def test_names_resolving_to_loopback_are_refused_when_connecting(ssrf):
    """Configured while private networks were allowed, under names and spellings that resolve to
    127.0.0.1; after the switch, each connector refuses to connect and nothing reaches the stand-ins."""
    set_private(ssrf, True)
    tenant = Tenant(ssrf)
    try:
        with JiraStandIn() as jira, ServiceNowStandIn() as sn, WebhookReceiver() as hook:
            jira_port, sn_port, hook_port = (s.url.rsplit(":", 1)[1] for s in (jira, sn, hook))
            tenant.configure(
                "JIRA", base_url=f"http://localhost:{jira_port}", email=jira.email, api_token=jira.token
            )
            tenant.configure(
                "SERVICENOW",
                instance_url=f"http://127.0.0.1:{sn_port}",
                username=sn.username,
                password=sn.password,
            )
            tenant.configure("WEBHOOK", url=f"http://127.0.0.1:{hook_port}/in", secret=hook.secret)
            ids = tenant.exceptions(2)
            set_private(ssrf, False)
            for target, queue in (("JIRA", "OPS"), ("SERVICENOW", ""), ("WEBHOOK", "")):
                response = tenant.dispatch(ids[0], target, queue)
                assert response.status_code == 422, response.text
                assert error_reason(response) == "TARGET_ADDRESS_NOT_ALLOWED"
                assert "localhost" not in response.text and "127.0.0.1" not in response.text
                bulk = tenant.bulk_dispatch(ids, target, queue).json()
                assert [f["reason"] for f in bulk["failed"]] == ["TARGET_ADDRESS_NOT_ALLOWED"] * 2
            assert jira.requests == [] and sn.requests == [] and hook.requests == []
    finally:
        tenant.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/",  # 127.0.0.1 as one decimal number
        "https://0x7f000001/",  # ... in hex
        "https://0177.0.0.1/",  # ... octal first byte
        "https://127.1/",  # ... short form
        "https://0/",  # 0.0.0.0
        "https://2852039166/",  # 169.254.169.254 as one number
        "https://0xa9.0xfe.0xa9.0xfe/",  # ... hex bytes
        "https://169.254.169.254.:443/latest",  # trailing dot
        "https://localhost./",
        "https://LOCALHOST/",
        "https://ip6-localhost/",
        "https://ip6-loopback/",
        "https://[::]/",
        "https://[fe80::1]/",  # IPv6 link-local
        "https://[fd00:ec2::254]/",  # unique-local (a cloud's IPv6 metadata address)
        "https://[::ffff:a9fe:a9fe]/",  # IPv4-mapped metadata address
        "https://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "https://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
        "https://224.0.0.1/",  # multicast
        "https://255.255.255.255/",
        "https://user:pass@127.0.0.1/",  # userinfo in front of loopback
        "https://example.com@127.0.0.1/",
        "https://metadata.google.internal/computeMetadata/v1/",  # does not resolve here: refused too
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "https:///nohost",
        # Special-purpose ranges (IANA registries) that Python 3.11's is_global let through.
        "https://192.0.0.8/",  # IPv4 dummy address
        "https://[3fff::1]/",  # IPv6 documentation (2024)
        "https://[5f00::1]/",  # SRv6 SIDs
        "https://[100:0:0:1::1]/",  # dummy IPv6 prefix
        "https://[64:ff9b:1::a00:1]/",  # local-use IPv4/IPv6 translation
        "https://[fec0::1]/",  # deprecated site-local
        "https://[4000::1]/",  # outside global unicast 2000::/3
        # Invalid ports and host names (a 500 before).
        "https://example.com:99999/",
        "https://" + "a" * 64 + ".example.com/",
    ],
)
def test_other_spellings_of_internal_addresses_are_refused_when_configured(ssrf, config_tenant, url):
    set_private(ssrf, False)
    tenant = config_tenant
    for target, field in URL_FIELDS.items():
        response = tenant.http.put(
            f"/v1/targets/{target}",
            json={field: url},
        )
        assert response.status_code == 400, (target, response.text)
        assert field in violation_fields(response)
        assert "Traceback" not in response.text
    targets = tenant.http.get("/v1/targets").json()["targets"]
    assert [t["target_system"] for t in targets] == ["MANUAL"]  # nothing was stored
