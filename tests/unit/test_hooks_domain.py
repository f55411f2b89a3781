"""Inbound hook rules (server/domain/hooks.py): the signature over the raw body, and what JIRA's and
ServiceNow's posts mean."""

from __future__ import annotations

import json

import pytest

from server.domain.dispatch import TargetSystem
from server.domain.errors import InvalidArgument, Unauthenticated
from server.domain.exceptions import Status
from server.domain.hooks import parse_event, verify_signature
from tests.support.standins import hub_signature

SECRET = "inbound-secret-0123456789"


def test_the_signature_is_an_hmac_of_the_exact_body():
    body = b'{"a": 1}'
    verify_signature(SECRET, body, hub_signature(SECRET, body))
    verify_signature(SECRET, body, hub_signature(SECRET, body).upper().replace("SHA256=", "sha256="))
    for secret, sent, header in (
        (SECRET, body + b" ", hub_signature(SECRET, body)),
        (SECRET, body, hub_signature("other-secret-0123456789", body)),
        (SECRET, body, None),
        (SECRET, body, ""),
        ("", body, hub_signature("", body)),  # no inbound_secret configured: nothing is accepted
    ):
        with pytest.raises(Unauthenticated):
            verify_signature(secret, sent, header)


def jira(fields) -> bytes:
    payload = {"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-7", "fields": fields}}
    return json.dumps(payload).encode()


def test_jira_done_resolves_with_the_resolution_name_and_an_assignee_assigns():
    done = {"status": {"name": "Closed", "statusCategory": {"key": "done"}}, "resolution": {"name": "Fixed"}}
    event = parse_event(TargetSystem.JIRA, jira(done), {"x-atlassian-webhook-identifier": "wh-1"})
    assert (event.ticket, event.status, event.notes) == ("OPS-7", Status.RESOLVED, "Fixed")
    assert event.event_id == "wh-1"
    no_resolution = {"status": {"name": "Closed", "statusCategory": {"key": "done"}}, "resolution": None}
    assert parse_event(TargetSystem.JIRA, jira(no_resolution), {}).notes == "Closed"
    assigned = {"status": {"statusCategory": {"key": "indeterminate"}}, "assignee": {"displayName": "Ana"}}
    event = parse_event(TargetSystem.JIRA, jira(assigned), {})
    assert (event.status, event.assignee) == (Status.ASSIGNED, "Ana")
    assert event.event_id.startswith("sha256:")  # no identifier header: the body identifies it
    still_new = {"status": {"statusCategory": {"key": "new"}}}
    assert parse_event(TargetSystem.JIRA, jira(still_new), {}).status is None


def test_servicenow_states_6_and_7_resolve():
    def post(**fields) -> bytes:
        payload = {"number": "INC0010001", "sys_id": "abc", "sys_updated_on": "t1", **fields}
        return json.dumps(payload).encode()

    for state in ("6", "7"):
        event = parse_event(TargetSystem.SERVICENOW, post(state=state, close_notes="done"), {})
        assert (event.status, event.notes, event.event_id) == (Status.RESOLVED, "done", "abc@t1")
    event = parse_event(TargetSystem.SERVICENOW, post(state="2", assigned_to={"display_value": "Beth"}), {})
    assert (event.status, event.assignee) == (Status.ASSIGNED, "Beth")
    assert parse_event(TargetSystem.SERVICENOW, post(state="2"), {}).status is None


@pytest.mark.parametrize(
    ("system", "body", "field"),
    [
        (TargetSystem.JIRA, b"not json", "body"),
        (TargetSystem.JIRA, b"[1]", "body"),
        (TargetSystem.JIRA, b'{"issue": {}}', "issue.key"),
        (TargetSystem.SERVICENOW, b'{"state": "6"}', "number"),
        (TargetSystem.JIRA, b"[" * 100000, "body"),
    ],
)
def test_bodies_that_are_not_the_systems_shape_are_400_naming_the_field(system, body, field):
    with pytest.raises(InvalidArgument) as caught:
        parse_event(system, body, {})
    assert caught.value.violations[0].field == field
