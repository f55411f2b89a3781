"""Inbound status from the ticket systems' own webhooks (API.md §9; docs/integrations.md).

Pure rules: how each system signs its posts, what an event means for the exceptions dispatched to
its ticket, and how a repeat is recognised. The signature is checked over the raw body before
anything parses it; only a verified body is read as JSON.

- JIRA posts its native webhook JSON (`webhookEvent`, `issue.key`, `issue.fields.status`,
  `issue.fields.assignee`, `issue.fields.resolution`) signed `X-Hub-Signature: sha256=<hex HMAC>`
  (JIRA's secret-protected webhooks); repeats carry the same `X-Atlassian-Webhook-Identifier`.
- ServiceNow posts `{number, sys_id, state, assigned_to, close_notes, correlation_id,
  sys_updated_on}` from the Business Rule documented in docs/integrations.md, signed
  `X-Signature-256: sha256=<hex HMAC>`; an event is (sys_id, sys_updated_on).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from server.domain.dispatch import TargetSystem
from server.domain.errors import InvalidArgument, Unauthenticated
from server.domain.exceptions import Status

SIGNATURE_HEADER = {TargetSystem.JIRA: "x-hub-signature", TargetSystem.SERVICENOW: "x-signature-256"}
# JIRA's delivery id, the same on every retry of one event.
JIRA_EVENT_ID_HEADER = "x-atlassian-webhook-identifier"
HOOK_SYSTEMS = frozenset(SIGNATURE_HEADER)
# ServiceNow incident states that close it: 6 Resolved, 7 Closed.
SERVICENOW_CLOSED_STATES = frozenset({"6", "7"})
MAX_TEXT = 1000


def new_hook_id() -> str:
    """The id in an inbound path: 144 random bits, URL-safe."""
    return secrets.token_urlsafe(18)


def inbound_path(target: TargetSystem, hook_id: str) -> str:
    return f"/v1/hooks/{target.value.lower()}/{hook_id}"


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """`sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant time; 401 otherwise."""
    if not secret:
        raise Unauthenticated("this hook has no inbound_secret configured; it accepts nothing")
    if not header:
        raise Unauthenticated("the signature header is missing")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.strip().lower().encode(), expected.encode()):
        raise Unauthenticated("the signature does not match the body")


@dataclass(frozen=True)
class HookEvent:
    """What one verified post says about one ticket."""

    system: TargetSystem
    event_id: str  # applied once per (tenant, system, event_id)
    ticket: str  # the external reference dispatch stored: JIRA issue key, ServiceNow number
    status: Status | None  # RESOLVED, ASSIGNED, or None (nothing this service tracks changed)
    assignee: str = ""
    notes: str = ""


def parse_event(system: TargetSystem, body: bytes, headers: dict[str, str]) -> HookEvent:
    """A verified body -> the event (400 naming the field when the shape is not the system's)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidArgument.field("body", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidArgument.field("body", "the body must be a JSON object")
    if system is TargetSystem.JIRA:
        return _jira(payload, headers, body)
    return _servicenow(payload, body)


def _jira(payload: dict[str, Any], headers: dict[str, str], body: bytes) -> HookEvent:
    issue = payload.get("issue")
    if not isinstance(issue, dict) or not isinstance(issue.get("key"), str) or not issue["key"].strip():
        raise InvalidArgument.field("issue.key", "is required (the issue's key)")
    fields = _dict(issue.get("fields"))
    status = _dict(fields.get("status"))
    category = _dict(status.get("statusCategory")).get("key")
    resolution = _dict(fields.get("resolution"))
    assignee = _dict(fields.get("assignee"))
    event_id = headers.get(JIRA_EVENT_ID_HEADER) or _digest(body)
    who = _text(assignee.get("displayName") or assignee.get("emailAddress") or assignee.get("name"))
    if not who:
        who = _text(assignee.get("accountId"))
    if category == "done":
        notes = _text(resolution.get("name")) or _text(status.get("name")) or "Done"
        return HookEvent(TargetSystem.JIRA, event_id, issue["key"].strip(), Status.RESOLVED, notes=notes)
    if who:
        return HookEvent(TargetSystem.JIRA, event_id, issue["key"].strip(), Status.ASSIGNED, assignee=who)
    return HookEvent(TargetSystem.JIRA, event_id, issue["key"].strip(), None)


def _servicenow(payload: dict[str, Any], body: bytes) -> HookEvent:
    number = payload.get("number")
    if not isinstance(number, str) or not number.strip():
        raise InvalidArgument.field("number", "is required (the record's number)")
    sys_id, updated = _text(payload.get("sys_id")), _text(payload.get("sys_updated_on"))
    event_id = f"{sys_id}@{updated}" if sys_id and updated else _digest(body)
    state = _text(payload.get("state"))
    assigned = payload.get("assigned_to")
    if isinstance(assigned, dict):  # {value, display_value} when the rule sends both
        assigned = assigned.get("display_value") or assigned.get("value")
    who = _text(assigned)
    if state in SERVICENOW_CLOSED_STATES:
        notes = _text(payload.get("close_notes")) or f"closed in ServiceNow (state {state})"
        return HookEvent(TargetSystem.SERVICENOW, event_id, number.strip(), Status.RESOLVED, notes=notes)
    if who:
        return HookEvent(TargetSystem.SERVICENOW, event_id, number.strip(), Status.ASSIGNED, assignee=who)
    return HookEvent(TargetSystem.SERVICENOW, event_id, number.strip(), None)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return " ".join(str(value).split())[:MAX_TEXT] if isinstance(value, (str, int)) and value != "" else ""


def _digest(body: bytes) -> str:
    """An event without its own id is recognised by its body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
