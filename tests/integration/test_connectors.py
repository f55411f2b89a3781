"""Connectors against the loopback stand-ins: request shapes, retries and Retry-After, timeouts,
the circuit breaker, lost answers, redirects. In process, real HTTP; no database."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from server.connectors.http import HttpSettings, TargetHttp, build_client
from server.connectors.jira import JiraConnector
from server.connectors.resilience import Breakers, Resilience, RetryPolicy
from server.connectors.servicenow import ServiceNowConnector
from server.connectors.ssrf import AddressPolicy
from server.connectors.webhook import WebhookConnector
from server.domain.dispatch import (
    TargetAddressRefused,
    TargetDown,
    TargetRejected,
    TargetSystem,
    TicketRef,
    TicketRequest,
    dispatch_key,
    external_marker,
)
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.targets import TargetConfig
from tests.support.standins import (
    Drop,
    DropAfter,
    JiraStandIn,
    Respond,
    ServiceNowStandIn,
    Stall,
    WebhookReceiver,
)


class Sleeps:
    """Records the waits the retry policy asks for instead of waiting them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


def make_http(sleeps, *, allow_private=True, attempts=3, breaker_failures=50, reset=30.0, read_timeout=2.0):
    policy = AddressPolicy(allow_private=allow_private)
    client = build_client(HttpSettings(connect_timeout=1.0, read_timeout=read_timeout), policy)
    resilience = Resilience(RetryPolicy(attempts, 0.01, 5.0), Breakers(breaker_failures, reset), sleep=sleeps)
    return TargetHttp(client, resilience)


@pytest.fixture
def http(sleeps):
    target = make_http(sleeps)
    yield target
    target.close()


def exception(**fields) -> ReconException:
    now = datetime.now(UTC)
    values = dict(
        id=str(uuid.uuid4()),
        tenant_id="t",
        transaction_id="txn-42",
        severity=Severity.HIGH,
        status=Status.OPEN,
        created_at=now,
        updated_at=now,
        occurred_at=now,
        reason="amount mismatch",
    )
    values.update(fields)
    return ReconException(**values)


def request(target: TargetSystem, queue="", check_existing=False, **fields) -> TicketRequest:
    e = exception(**fields)
    return TicketRequest(
        e, queue, dispatch_key(target, e.id, queue), external_marker(target, e.id, queue), check_existing
    )


def jira(standin: JiraStandIn, http, **settings) -> JiraConnector:
    secrets = {"api_token": standin.token}
    if standin.email:
        secrets["email"] = standin.email
    config = TargetConfig("t", TargetSystem.JIRA, {"base_url": standin.url, **settings}, secrets)
    return JiraConnector(config, http)


# -- JIRA -------------------------------------------------------------------------------------------


def test_jira_creates_one_issue_with_the_documented_fields(http):
    with JiraStandIn() as standin:
        item = request(TargetSystem.JIRA, queue="OPS", severity=Severity.CRITICAL)
        [ref] = jira(standin, http).send([item])
        assert ref == TicketRef("OPS-1", acknowledged=True, http_status=201)
        fields = standin.issues["OPS-1"]["fields"]
        assert fields["project"] == {"key": "OPS"}
        assert fields["issuetype"] == {"name": "Task"} and fields["priority"] == {"name": "Highest"}
        assert fields["labels"] == [item.marker]
        assert item.exception.id in fields["description"] and "txn-42" in fields["summary"]
        assert standin.count("POST", "/rest/api/2/issue") == 1
        assert standin.violations == []


def test_jira_without_a_project_is_refused_without_a_call(http):
    with JiraStandIn() as standin:
        [error] = jira(standin, http).send([request(TargetSystem.JIRA)])
        assert isinstance(error, TargetRejected) and "project" in error.message
        assert standin.requests == []


def test_jira_bulk_maps_element_errors_back_to_items_in_order(http):
    reject = lambda fields: "summary is refused" if "reject" in fields["summary"] else None  # noqa: E731
    with JiraStandIn(reject=reject) as standin:
        batch = [
            request(TargetSystem.JIRA, transaction_id=f"{'reject' if i % 3 == 0 else 'ok'}-{i}")
            for i in range(50)
        ]
        results = jira(standin, http, project_key="FIN").send(batch)
        assert standin.count("POST", "/rest/api/2/issue/bulk") == 1
        for i, result in enumerate(results):
            if i % 3 == 0:
                assert isinstance(result, TargetRejected)
                assert result.message == "JIRA rejected the issue: 400 summary is refused"
            else:
                issue = standin.issues[result.external_reference]
                assert issue["fields"]["labels"] == [batch[i].marker]  # the right issue for the item
        assert standin.violations == []


def test_jira_bulk_where_every_element_fails_is_a_400_with_per_item_errors(http):
    with JiraStandIn() as standin:
        batch = [request(TargetSystem.JIRA, queue="NOPE") for _ in range(3)]
        results = jira(standin, http).send(batch)
        assert [r.message for r in results] == ["JIRA rejected the issue: 400 valid project is required"] * 3


def test_jira_server_bearer_token_and_legacy_search(http):
    with JiraStandIn(email=None, token="pat-xyz") as standin:
        item = request(TargetSystem.JIRA, queue="OPS")
        connector = jira(standin, http)
        [first] = connector.send([item])
        [again] = connector.send([TicketRequest(item.exception, "OPS", item.key, item.marker, True)])
        # Found by label through /rest/api/2/search, not created twice (a search has no creation status).
        assert (again.external_reference, again.acknowledged) == (first.external_reference, True)
        assert len(standin.issues) == 1 and standin.count("GET", "/rest/api/2/search") == 1
        assert standin.violations == []


def test_jira_cloud_searches_the_new_endpoint(http):
    with JiraStandIn() as standin:
        item = request(TargetSystem.JIRA, queue="OPS")
        connector = jira(standin, http)
        connector.send([item])
        connector.send([TicketRequest(item.exception, "OPS", item.key, item.marker, True)])
        assert standin.count("GET", "/rest/api/2/search/jql") == 1 and len(standin.issues) == 1


def test_a_lost_answer_is_followed_by_a_search_not_a_second_issue(http, sleeps):
    with JiraStandIn() as standin:
        standin.cue(DropAfter(method="POST"))  # JIRA creates the issue; the answer never arrives
        [ref] = jira(standin, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert ref == TicketRef("OPS-1", acknowledged=True)
        assert len(standin.issues) == 1 and standin.count("POST", "/rest/api/2/issue") == 1
        assert standin.count("GET", "/rest/api/2/search") == 1 and len(sleeps.waits) == 1


def test_a_lost_bulk_answer_adopts_what_was_created(http):
    with JiraStandIn() as standin:
        standin.cue(DropAfter(method="POST"))
        batch = [request(TargetSystem.JIRA, queue="OPS") for _ in range(5)]
        results = jira(standin, http).send(batch)
        assert len(standin.issues) == 5 and standin.count("POST", "/rest/api/2/issue/bulk") == 1
        assert sorted(r.external_reference for r in results) == sorted(standin.issues)


# -- retries, Retry-After, timeouts, breaker --------------------------------------------------------


def test_5xx_and_429_are_retried_honouring_retry_after(http, sleeps):
    with JiraStandIn() as standin:
        standin.cue(Respond(503, {"errorMessages": ["busy"]}), Respond(429, None, {"Retry-After": "2"}))
        [ref] = jira(standin, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert isinstance(ref, TicketRef) and standin.count("POST", "/rest/api/2/issue") == 3
        assert sleeps.waits[1] == 2.0  # the second wait is the one JIRA asked for
        assert sleeps.waits[0] < 1.0  # the first is backoff (0.01 s base, jitter)


def test_a_retry_after_beyond_the_longest_wait_ends_the_retries(http, sleeps):
    with JiraStandIn() as standin:
        standin.cue(Respond(429, None, {"Retry-After": "120"}))
        [error] = jira(standin, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert isinstance(error, TargetDown) and not error.maybe_created
        assert error.message == "JIRA is unavailable: answered 429, asking to retry after 120 s (1 attempt)"
        assert sleeps.waits == [] and standin.count("POST", "/rest/api/2/issue") == 1


def test_retries_give_up_after_the_last_attempt(http):
    with JiraStandIn() as standin:
        standin.cue(*[Respond(502, {"errorMessages": ["bad gateway"]}) for _ in range(3)])
        [error] = jira(standin, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert error.message == "JIRA is unavailable: answered 502 (3 attempts)"
        assert error.maybe_created and error.reason == "TARGET_UNAVAILABLE"


def test_a_stalled_target_times_out_on_every_attempt(sleeps):
    http = make_http(sleeps, read_timeout=0.3)
    with WebhookReceiver() as receiver:
        receiver.cue(Stall(), Stall(), Stall())
        connector = WebhookConnector(
            TargetConfig("t", TargetSystem.WEBHOOK, {"url": receiver.url}, {"secret": receiver.secret}), http
        )
        [error] = connector.send([request(TargetSystem.WEBHOOK)])
        assert error.message == "WEBHOOK is unavailable: timed out (3 attempts)" and error.maybe_created
        assert receiver.count("POST", "/") == 3
    http.close()


def test_the_circuit_opens_after_repeated_failures_and_closes_after_a_success(sleeps):
    http = make_http(sleeps, attempts=1, breaker_failures=2, reset=0.3)
    with JiraStandIn() as standin:
        connector = jira(standin, http, project_key="OPS")
        standin.cue(Drop(), Drop())
        for _ in range(2):
            [error] = connector.send([request(TargetSystem.JIRA)])
            # One request per attempt (the delivery workers count attempts): no "(n attempts)".
            assert error.message == "JIRA is unavailable: connection dropped"
        [error] = connector.send([request(TargetSystem.JIRA)])
        assert error.message == "JIRA is unavailable: circuit open after repeated failures; not called"
        assert standin.count("POST", "/") == 2  # the third call never reached JIRA
        time.sleep(0.4)  # past the reset timeout: the next call is the half-open trial
        [ref] = connector.send([request(TargetSystem.JIRA)])
        assert isinstance(ref, TicketRef)
        [ref] = connector.send([request(TargetSystem.JIRA)])
        assert isinstance(ref, TicketRef) and standin.count("POST", "/") == 4
    http.close()


def test_the_circuit_is_per_tenant_and_target_system(sleeps):
    """One tenant's failing JIRA opens its own circuit; another tenant's JIRA on the same host, and
    the same tenant's webhook, are still called (API.md §7: breaker per (tenant, target))."""
    http = make_http(sleeps, attempts=1, breaker_failures=1, reset=60.0)
    with JiraStandIn() as standin, WebhookReceiver() as receiver:
        secrets = {"email": standin.email, "api_token": standin.token}
        settings = {"base_url": standin.url, "project_key": "OPS"}
        mine = JiraConnector(TargetConfig("t", TargetSystem.JIRA, settings, secrets), http)
        theirs = JiraConnector(TargetConfig("u", TargetSystem.JIRA, settings, secrets), http)
        standin.cue(Drop())
        [error] = mine.send([request(TargetSystem.JIRA)])
        assert error.message == "JIRA is unavailable: connection dropped"
        [error] = mine.send([request(TargetSystem.JIRA)])
        assert error.message == "JIRA is unavailable: circuit open after repeated failures; not called"
        [ref] = theirs.send([request(TargetSystem.JIRA)])
        assert isinstance(ref, TicketRef) and standin.count("POST", "/") == 2
        hook = WebhookConnector(
            TargetConfig("t", TargetSystem.WEBHOOK, {"url": receiver.url}, {"secret": receiver.secret}), http
        )
        [ref] = hook.send([request(TargetSystem.WEBHOOK)])
        assert isinstance(ref, TicketRef) and receiver.count("POST", "/") == 1
    http.close()


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 503])
def test_these_statuses_are_retryable_and_other_4xx_permanent(sleeps, status):
    http = make_http(sleeps, attempts=1)
    with JiraStandIn() as standin:
        standin.cue(
            Respond(status, {"errorMessages": ["try later"]}), Respond(422, {"errorMessages": ["no"]})
        )
        connector = jira(standin, http, project_key="OPS")
        [error] = connector.send([request(TargetSystem.JIRA)])
        assert isinstance(error, TargetDown) and error.http_status == status
        assert error.message == f"JIRA is unavailable: answered {status}"
        [error] = connector.send([request(TargetSystem.JIRA)])
        assert isinstance(error, TargetRejected) and error.http_status == 422
        assert standin.count("POST", "/") == 2 and sleeps.waits == []
    http.close()


def test_a_rejection_is_not_retried_and_does_not_count_towards_the_breaker(sleeps):
    http = make_http(sleeps, breaker_failures=1)
    with JiraStandIn() as standin:
        connector = jira(standin, http)
        for _ in range(3):
            [error] = connector.send([request(TargetSystem.JIRA, queue="NOPE")])
            assert error.message == "JIRA rejected the issue: 400 valid project is required"
        assert standin.count("POST", "/") == 3 and sleeps.waits == []
    http.close()


def test_bad_credentials_read_as_such(http):
    with JiraStandIn() as standin:
        config = TargetConfig(
            "t", TargetSystem.JIRA, {"base_url": standin.url}, {"email": standin.email, "api_token": "wrong"}
        )
        [error] = JiraConnector(config, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert error.message == "JIRA refused the credentials: 401 You are not authenticated."


def test_redirects_are_reported_not_followed(http):
    with JiraStandIn() as elsewhere, JiraStandIn() as standin:
        standin.cue(Respond(302, None, {"Location": f"{elsewhere.url}/rest/api/2/issue"}))
        [error] = jira(standin, http).send([request(TargetSystem.JIRA, queue="OPS")])
        assert error.message == "JIRA rejected the issue: 302 redirected; check the configured URL"
        assert elsewhere.requests == []


# -- ServiceNow and webhooks ------------------------------------------------------------------------


def test_servicenow_creates_an_incident_and_finds_it_by_correlation_id(http):
    with ServiceNowStandIn() as standin:
        config = TargetConfig(
            "t",
            TargetSystem.SERVICENOW,
            {"instance_url": standin.url, "table": "incident"},
            {"username": standin.username, "password": standin.password},
        )
        connector = ServiceNowConnector(config, http)
        item = request(TargetSystem.SERVICENOW, queue="Finance Ops", severity=Severity.LOW)
        [ref] = connector.send([item])
        assert ref == TicketRef("INC0010001", acknowledged=True, http_status=201)
        [record] = standin.records
        assert record["correlation_id"] == item.marker and record["assignment_group"] == "Finance Ops"
        assert (record["urgency"], record["impact"]) == ("2", "3")
        [again] = connector.send([TicketRequest(item.exception, item.queue, item.key, item.marker, True)])
        assert (again.external_reference, again.acknowledged) == (ref.external_reference, True)
        assert len(standin.records) == 1
        assert standin.violations == []


def test_servicenow_errors_read_as_sentences(http):
    with ServiceNowStandIn(reject=lambda body: "ACL denies insert") as standin:
        good = {"username": standin.username, "password": standin.password}
        for secrets, expected in (
            ({**good, "password": "x"}, "refused the credentials: 401 User Not Authenticated: Required to"),
            (good, "rejected the record: 403 Operation Failed: ACL denies insert"),
        ):
            config = TargetConfig("t", TargetSystem.SERVICENOW, {"instance_url": standin.url}, secrets)
            [error] = ServiceNowConnector(config, http).send([request(TargetSystem.SERVICENOW)])
            assert error.message.startswith(f"SERVICENOW {expected}")


def test_webhook_deliveries_are_signed_and_repeat_with_the_same_key(http):
    with WebhookReceiver() as receiver:
        receiver.cue(DropAfter())
        connector = WebhookConnector(
            TargetConfig("t", TargetSystem.WEBHOOK, {"url": receiver.url}, {"secret": receiver.secret}), http
        )
        item = request(TargetSystem.WEBHOOK, queue="payments")
        [ref] = connector.send([item])
        assert ref == TicketRef("WH-1", acknowledged=True, http_status=200)
        assert (
            receiver.count("POST", "/") == 2
            and receiver.repeats == 1
            and list(receiver.deliveries) == [item.marker]
        )
        payload = receiver.deliveries[item.marker]
        assert payload["exception"]["id"] == item.exception.id and payload["queue"] == "payments"
        assert receiver.violations == []


# -- the SSRF guard at connect time -----------------------------------------------------------------


def test_connections_to_private_addresses_are_refused_at_connect_time(sleeps):
    http = make_http(sleeps, allow_private=False)
    with WebhookReceiver() as receiver:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            connector = WebhookConnector(
                TargetConfig("t", TargetSystem.WEBHOOK, {"url": url}, {"secret": receiver.secret}), http
            )
            [error] = connector.send([request(TargetSystem.WEBHOOK)])
            assert isinstance(error, TargetAddressRefused) and "127.0.0.1" not in error.message
        assert receiver.requests == [] and sleeps.waits == []
    http.close()


def test_a_name_that_resolves_to_a_private_address_later_is_refused(sleeps):
    """DNS rebinding: the name passed the configuration check; at connect time it points inside."""
    answers = {"hooks.example": ["93.184.216.34"]}
    policy = AddressPolicy(allow_private=False, resolver=lambda host, port: answers[host])
    assert policy.check_url("https://hooks.example/in") is None
    answers["hooks.example"] = ["169.254.169.254"]
    client = build_client(HttpSettings(connect_timeout=1.0, read_timeout=1.0), policy)
    http = TargetHttp(client, Resilience(RetryPolicy(3, 0.01, 1.0), Breakers(5, 30), sleep=sleeps))
    connector = WebhookConnector(
        TargetConfig("t", TargetSystem.WEBHOOK, {"url": "https://hooks.example/in"}, {"secret": "s" * 16}),
        http,
    )
    [error] = connector.send([request(TargetSystem.WEBHOOK)])
    assert isinstance(error, TargetAddressRefused) and error.reason == "TARGET_ADDRESS_NOT_ALLOWED"
    assert "hooks.example" not in error.message
    http.close()
