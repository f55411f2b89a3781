"""Loopback stand-ins for the target systems: real HTTP servers on 127.0.0.1 that speak each
system's documented API, check every request against it, and misbehave on cue.

Each stand-in records what it received (`requests`) and every way a request broke the documented
shape (`violations`: tests assert it stays empty). Cues are consumed by the next matching requests:

    jira.cue(Respond(503), Respond(429, headers={"Retry-After": "1"}))   # then normal answers
    jira.cue(Stall())            # hold the request until release() (a timeout for the client)
    jira.cue(Drop())             # close the connection without answering
    jira.cue(DropAfter())        # do the work (create the ticket), then drop: the answer is lost
    jira.cue(After(callback))    # do the work, call callback (e.g. kill the server), then answer
    jira.cue(Hold())             # hold the request until release(), then do the work and answer
    hook.cue(Trickle())          # answer normally, but one byte per second (a trickling target)
    hook.cue(Respond(400, b"raw\x00bytes"))  # a bytes body goes out as it is (text/plain)

Shapes (from the public docs): JIRA REST API v2 (issue, issue/bulk, search and search/jql), the
ServiceNow Table API (POST and GET /api/now/table/{table}), and signed webhooks (API.md §3).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import standardwebhooks

WEBHOOK_TYPES = ("exception.dispatched", "exception.resolved")


@dataclass
class Respond:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path: str | None = None


@dataclass
class Stall:
    method: str | None = None
    path: str | None = None


@dataclass
class Drop:
    method: str | None = None
    path: str | None = None


@dataclass
class DropAfter:
    method: str | None = None
    path: str | None = None


@dataclass
class After:
    callback: Callable[[], None]
    method: str | None = None
    path: str | None = None


@dataclass
class Hold:
    """Hold the request until release(); then handle it as usual and answer (to whoever is still
    listening): the work is done even when the caller died meanwhile."""

    method: str | None = None
    path: str | None = None


@dataclass
class Trickle:
    """Handle the request as usual, but send the whole answer (status line, headers, body) one byte
    every `interval` seconds: every read succeeds, only a total deadline ends it."""

    interval: float = 1.0
    method: str | None = None
    path: str | None = None


Cue = Respond | Stall | Drop | DropAfter | After | Hold | Trickle


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Dropped(Exception):
    pass


class StandIn:
    """Base: the server, recording, cues. Subclasses implement handle(method, path, query, headers, body)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.latency = latency
        self._cues: list[Cue] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def cue(self, *cues: Cue) -> None:
        with self._lock:
            self._cues.extend(cues)

    def release(self) -> None:
        """Lets stalled requests go (they are then dropped)."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path.startswith(path_prefix))

    def violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _take_cue(self, method: str, path: str) -> Cue | None:
        with self._lock:
            for i, cue in enumerate(self._cues):
                if (cue.method in (None, method)) and (cue.path is None or path.startswith(cue.path)):
                    return self._cues.pop(i)
        return None

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ):
        raise NotImplementedError

    def _handler_class(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real services

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's algorithm holds
                # the body until the client's delayed ACK (~40 ms per request), as no real server does.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = Recorded(self.command, parts.path, parse_qs(parts.query), headers, body)
                with standin._lock:
                    standin.requests.append(record)
                if standin.latency:
                    time.sleep(standin.latency)
                cue = standin._take_cue(self.command, parts.path)
                if isinstance(cue, Stall):
                    standin._released.wait()
                    return self._drop()
                if isinstance(cue, Drop):
                    return self._drop()
                if isinstance(cue, Respond):
                    return self._send(cue.status, cue.body, cue.headers)
                if isinstance(cue, Hold):
                    standin._released.wait()
                status, answer, extra = standin.handle(self.command, parts.path, record.query, headers, body)
                if isinstance(cue, Trickle):
                    return self._trickle(cue.interval, status, answer, extra)
                if isinstance(cue, DropAfter):
                    return self._drop()
                if isinstance(cue, After):
                    cue.callback()
                self._send(status, answer, extra)

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)

            def _trickle(
                self, interval: float, status: int, answer: Any, extra: dict[str, str] | None
            ) -> None:
                data = b"" if answer is None else json.dumps(answer).encode()
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(data)}"]
                if answer is not None:
                    head.append("Content-Type: application/json")
                head += [f"{name}: {value}" for name, value in (extra or {}).items()]
                raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
                self.close_connection = True
                try:
                    for i in range(len(raw)):
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(interval)
                except OSError:
                    pass  # the client gave up (its deadline passed)

            def _send(self, status: int, answer: Any, extra: dict[str, str] | None) -> None:
                raw = isinstance(answer, bytes)
                data = b"" if answer is None else answer if raw else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    if raw and "Content-Type" not in (extra or {}):
                        self.send_header("Content-Type", "text/plain")
                    elif answer is not None and not raw:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (extra or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away (it timed out, or was killed)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- JIRA REST API v2 -------------------------------------------------------------------------------

JIRA_PRIORITIES = {"Highest", "High", "Medium", "Low", "Lowest"}
JIRA_FIELDS = {"project", "summary", "description", "issuetype", "priority", "labels"}


# A small workflow: To Do -(11)-> In Progress -(31)-> Done, and To Do -(31)-> Done.
JIRA_WORKFLOW = (
    {"id": "11", "name": "Start", "from": "To Do", "to": "In Progress"},
    {"id": "31", "name": "Done", "from": "To Do", "to": "Done"},
    {"id": "31", "name": "Done", "from": "In Progress", "to": "Done"},
)


class JiraStandIn(StandIn):
    """Cloud (email + API token, basic auth) unless email is None (Server/Data Center bearer token).
    `reject(fields)` may return an error message to refuse one issue (400, per element in bulk)."""

    def __init__(
        self,
        *,
        email: str | None = "bot@example.com",
        token: str = "jira-token-123",
        projects: tuple[str, ...] = ("OPS", "FIN"),
        issue_types: tuple[str, ...] = ("Task", "Bug"),
        legacy_search: bool = False,
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.email, self.token = email, token
        self.projects, self.issue_types = projects, issue_types
        # Jira Cloud answers 410 on the removed /rest/api/2/search; Server/DC have no /search/jql.
        self.legacy_search = legacy_search if email is not None else True
        self.reject = reject
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.transitions: list[tuple[str, str]] = []  # (issue key, transition id) applied
        self._numbers = itertools.count(1)
        super().__init__(latency)

    def handle(self, method, path, query, headers, body):
        expected = _basic(self.email, self.token) if self.email is not None else f"Bearer {self.token}"
        if headers.get("authorization") != expected:
            return 401, {"errorMessages": ["You are not authenticated."], "errors": {}}, None
        if method == "POST" and path == "/rest/api/2/issue":
            return self._create_one(body, headers)
        if method == "POST" and path == "/rest/api/2/issue/bulk":
            return self._create_bulk(body, headers)
        if method == "GET" and path in ("/rest/api/2/search", "/rest/api/2/search/jql"):
            return self._search(path, query)
        match = re.fullmatch(r"/rest/api/2/issue/([A-Z][A-Z0-9_]*-[0-9]+)/(comment|transitions)", path)
        if match and match.group(1) in self.issues:
            key, what = match.groups()
            if what == "comment":
                return self._comment(key, method, body, headers)
            return self._transitions(key, method, body, headers)
        missing = "Issue does not exist or you do not have permission to see it."
        return 404, {"errorMessages": [missing], "errors": {}}, None

    def _comment(self, key: str, method: str, body: bytes, headers: dict[str, str]):
        """REST v2 comments: POST {"body": text} -> 201; GET -> {startAt, maxResults, total, comments}."""
        comments = self.comments.setdefault(key, [])
        if method == "GET":
            return 200, {"startAt": 0, "maxResults": 100, "total": len(comments), "comments": comments}, None
        if method != "POST":
            return 405, None, None
        payload = self._json(body, headers)
        if set(payload) != {"body"} or not isinstance(payload["body"], str) or not payload["body"].strip():
            self.violation(f"JIRA: comment body is not {{'body': text}}: {payload!r}")
            return 400, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}, None
        comment = {"id": str(10000 + sum(map(len, self.comments.values()))), "body": payload["body"]}
        comments.append(comment)
        return 201, {**comment, "self": f"{self.url}/rest/api/2/issue/{key}/comment/{comment['id']}"}, None

    def _transitions(self, key: str, method: str, body: bytes, headers: dict[str, str]):
        """GET -> {"transitions": [{id, name, to}]} available from the issue's status; POST
        {"transition": {"id"}} -> 204, 400 when that transition is not available now."""
        status = self.issues[key].setdefault("_status", "To Do")
        available = [t for t in JIRA_WORKFLOW if t["from"] == status]
        if method == "GET":
            shown = [{"id": t["id"], "name": t["name"], "to": {"name": t["to"]}} for t in available]
            return 200, {"transitions": shown}, None
        payload = self._json(body, headers)
        wanted = (payload.get("transition") or {}).get("id") if isinstance(payload, dict) else None
        chosen = [t for t in available if t["id"] == wanted]
        if not chosen:
            refusal = f"Transition id '{wanted}' is not valid for this issue."
            return 400, {"errorMessages": [refusal], "errors": {}}, None
        self.issues[key]["_status"] = chosen[0]["to"]
        self.transitions.append((key, chosen[0]["id"]))
        return 204, None, None

    def _json(self, body: bytes, headers: dict[str, str]) -> Any:
        if "application/json" not in headers.get("content-type", ""):
            self.violation("JIRA: request without Content-Type application/json")
        return json.loads(body)

    def _check_fields(self, fields: Any) -> dict[str, str]:
        """JIRA's ErrorCollection.errors for one issue's fields."""
        errors: dict[str, str] = {}
        if not isinstance(fields, dict):
            self.violation("JIRA: fields is not an object")
            return {"fields": "fields is required"}
        for name in fields:
            if name not in JIRA_FIELDS:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
        project = (
            (fields.get("project") or {}).get("key") if isinstance(fields.get("project"), dict) else None
        )
        if not project:
            errors["project"] = "project is required"
        elif project not in self.projects:
            errors["project"] = "valid project is required"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255 or "\n" in summary:
            errors["summary"] = "Summary must be less than 255 characters and one line."
        if not isinstance(fields.get("description", ""), str):
            errors["description"] = "Operation value must be a string"  # v2 takes text, v3 ADF
        issuetype = fields.get("issuetype")
        if not isinstance(issuetype, dict) or issuetype.get("name") not in self.issue_types:
            errors["issuetype"] = "The issue type selected is invalid."
        priority = fields.get("priority")
        if priority is not None and (
            not isinstance(priority, dict) or priority.get("name") not in JIRA_PRIORITIES
        ):
            errors["priority"] = "Specify a valid priority."
        labels = fields.get("labels", [])
        if not isinstance(labels, list) or any(
            not isinstance(x, str) or not x or len(x) > 255 or re.search(r"\s", x) for x in labels
        ):
            errors["labels"] = "Labels may not contain spaces and are at most 255 characters."
        for name, message in errors.items():
            if name != "project" or project is None:
                self.violation(f"JIRA: {name}: {message}")
        if not errors and self.reject is not None:
            refused = self.reject(fields)
            if refused:
                errors["summary"] = refused
        return errors

    def _store(self, fields: dict[str, Any]) -> dict[str, str]:
        number = next(self._numbers)
        key = f"{fields['project']['key']}-{number}"
        issue_id = str(10000 + number)
        self.issues[key] = {"id": issue_id, "fields": fields}
        return {"id": issue_id, "key": key, "self": f"{self.url}/rest/api/2/issue/{issue_id}"}

    def _create_one(self, body: bytes, headers: dict[str, str]):
        payload = self._json(body, headers)
        if not isinstance(payload, dict) or set(payload) - {"fields", "update"}:
            self.violation(f"JIRA: create body has keys {sorted(payload)}")
        errors = self._check_fields(payload.get("fields"))
        if errors:
            return 400, {"errorMessages": [], "errors": errors}, None
        return 201, self._store(payload["fields"]), None

    def _create_bulk(self, body: bytes, headers: dict[str, str]):
        payload = self._json(body, headers)
        updates = payload.get("issueUpdates") if isinstance(payload, dict) else None
        if not isinstance(updates, list) or not updates:
            self.violation("JIRA: bulk body without issueUpdates")
            return 400, {"errorMessages": ["issueUpdates is required"], "errors": {}}, None
        if len(updates) > 50:
            self.violation(f"JIRA: bulk of {len(updates)} issues (at most 50)")
            return 400, {"errorMessages": ["Too many issues: at most 50"], "errors": {}}, None
        issues, failures = [], []
        for number, update in enumerate(updates):
            errors = self._check_fields(update.get("fields") if isinstance(update, dict) else None)
            if errors:
                failures.append(
                    {
                        "status": 400,
                        "elementErrors": {"errorMessages": [], "errors": errors},
                        "failedElementNumber": number,
                    }
                )
            else:
                issues.append(self._store(update["fields"]))
        return (201 if issues else 400), {"issues": issues, "errors": failures}, None

    def _search(self, path: str, query: dict[str, list[str]]):
        if path == "/rest/api/2/search" and not self.legacy_search:
            return (
                410,
                {"errorMessages": ["The requested API has been removed. Use /rest/api/2/search/jql."]},
                None,
            )
        if path == "/rest/api/2/search/jql" and self.email is None:
            return 404, {"errorMessages": ["Not found"], "errors": {}}, None
        jql = (query.get("jql") or [""])[0]
        match = re.fullmatch(r'labels in \(((?:"[^"]+"(?:, )?)+)\)( ORDER BY created ASC)?', jql)
        if not match:
            self.violation(f"JIRA: unexpected JQL {jql!r}")
            return 400, {"errorMessages": [f"Error in the JQL Query: {jql}"], "errors": {}}, None
        wanted = set(re.findall(r'"([^"]+)"', match.group(1)))
        found = [
            {"id": issue["id"], "key": key, "fields": {"labels": issue["fields"].get("labels", [])}}
            for key, issue in self.issues.items()
            if wanted & set(issue["fields"].get("labels", []))
        ]
        if path.endswith("/jql"):
            return 200, {"issues": found, "isLast": True}, None
        return 200, {"startAt": 0, "maxResults": 50, "total": len(found), "issues": found}, None


# -- ServiceNow Table API ---------------------------------------------------------------------------

# What resolving an incident sets (the Table API's PATCH; close_code and close_notes are mandatory
# when state becomes Resolved in the default incident data policy).
SERVICENOW_RESOLVE_FIELDS = {"state", "close_code", "close_notes"}
SERVICENOW_FIELDS = {
    "short_description",
    "description",
    "urgency",
    "impact",
    "assignment_group",
    "correlation_id",
    "correlation_display",
}


class ServiceNowStandIn(StandIn):
    def __init__(
        self,
        *,
        username: str = "integration",
        password: str = "sn-password-123",
        table: str = "incident",
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.username, self.password, self.table = username, password, table
        self.reject = reject
        self.records: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []  # (number, fields) per PATCH
        self._numbers = itertools.count(10001)
        super().__init__(latency)

    @staticmethod
    def _error(status: int, message: str, detail: str = ""):
        return status, {"error": {"message": message, "detail": detail}, "status": "failure"}, None

    def handle(self, method, path, query, headers, body):
        if headers.get("authorization") != _basic(self.username, self.password):
            return self._error(401, "User Not Authenticated", "Required to provide Auth information")
        record_path = re.fullmatch(rf"/api/now/table/{self.table}/([0-9a-f]{{32}})", path)
        if record_path and method == "PATCH":
            return self._patch(record_path.group(1), body, headers, (query.get("sysparm_fields") or [""])[0])
        if path != f"/api/now/table/{self.table}":
            return self._error(400, "Invalid table", path)
        if "application/json" not in headers.get("accept", ""):
            self.violation("ServiceNow: no Accept: application/json")
        fields = (query.get("sysparm_fields") or [""])[0]
        if method == "POST":
            return self._insert(body, headers, fields)
        if method == "GET":
            return self._query(query, fields)
        return self._error(405, "Method not supported")

    def _project(self, record: dict[str, Any], fields: str) -> dict[str, Any]:
        names = [f for f in fields.split(",") if f]
        return {k: v for k, v in record.items() if not names or k in names}

    def _insert(self, body: bytes, headers: dict[str, str], fields: str):
        if "application/json" not in headers.get("content-type", ""):
            self.violation("ServiceNow: POST without Content-Type application/json")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            self.violation("ServiceNow: body is not an object")
            return self._error(400, "Invalid body")
        for name, value in payload.items():
            if name not in SERVICENOW_FIELDS:
                self.violation(f"ServiceNow: unexpected field {name}")
            if not isinstance(value, str):
                self.violation(f"ServiceNow: {name} is not a string")
        for name in ("urgency", "impact"):
            if payload.get(name) not in ("1", "2", "3"):
                self.violation(f"ServiceNow: {name} must be 1, 2 or 3")
        if not payload.get("short_description") or len(payload["short_description"]) > 160:
            self.violation("ServiceNow: short_description missing or longer than 160")
        if len(payload.get("correlation_id", "")) > 100:
            self.violation("ServiceNow: correlation_id longer than 100")
        refused = self.reject(payload) if self.reject else None
        if refused:
            return self._error(403, "Operation Failed", refused)
        number = next(self._numbers)
        record = {
            **payload,
            "number": f"INC{number:07d}",
            "sys_id": hashlib.md5(str(number).encode()).hexdigest(),
        }
        self.records.append(record)
        return 201, {"result": self._project(record, fields)}, {"Location": f"{self.url}/api/now/table/x"}

    def _patch(self, sys_id: str, body: bytes, headers: dict[str, str], fields: str):
        """PATCH /api/now/table/{table}/{sys_id}: the fields given change -> 200 {"result": record}."""
        found = [r for r in self.records if r["sys_id"] == sys_id]
        if not found:
            return self._error(404, "No Record found", "Record doesn't exist or ACL restricts retrieval")
        if "application/json" not in headers.get("content-type", ""):
            self.violation("ServiceNow: PATCH without Content-Type application/json")
        payload = json.loads(body)
        for name, value in payload.items():
            if name not in SERVICENOW_RESOLVE_FIELDS or not isinstance(value, str):
                self.violation(f"ServiceNow: unexpected PATCH field {name}={value!r}")
        closing = payload.get("state") in ("6", "7")
        if closing and not (payload.get("close_code") and payload.get("close_notes")):
            self.violation("ServiceNow: resolving needs close_code and close_notes (data policy)")
        found[0].update(payload)
        self.patches.append((found[0]["number"], payload))
        return 200, {"result": self._project(found[0], fields)}, None

    def _query(self, query: dict[str, list[str]], fields: str):
        raw = (query.get("sysparm_query") or [""])[0]
        by_number = re.fullmatch(r"number=(\w+)", raw)
        if by_number:
            found = [self._project(r, fields) for r in self.records if r["number"] == by_number.group(1)]
            return 200, {"result": found}, None
        match = re.fullmatch(r"correlation_idIN([^^]+)(\^ORDERBYsys_created_on)?", raw)
        if not match:
            self.violation(f"ServiceNow: unexpected sysparm_query {raw!r}")
            return 200, {"result": []}, None  # ServiceNow ignores what it cannot parse
        wanted = set(match.group(1).split(","))
        found = [self._project(r, fields) for r in self.records if r.get("correlation_id") in wanted]
        return 200, {"result": found}, None


# -- signed webhooks --------------------------------------------------------------------------------


def new_whsec() -> str:
    """A Standard Webhooks secret for receivers that are given one (`whsec_` + base64 of 32 bytes)."""
    return "whsec_" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()


class WebhookReceiver(StandIn):
    """Verifies every delivery and keeps one per X-Idempotency-Key (repeats are acknowledged, not
    stored twice).

    STANDARD_WEBHOOKS (default): with the reference `standardwebhooks` library (PyPI), as a receiver
    built on it would: webhook-id / webhook-timestamp (its own freshness window) / webhook-signature;
    the body must be `{type, timestamp (RFC 3339), data}`; `deliveries` keeps each `data`.
    HMAC_SHA256_HEX: X-Signature-256 over the raw body and the signed timestamp's freshness.
    `events` lists every accepted (type, webhook-id, data) in order of arrival."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        scheme: str = "STANDARD_WEBHOOKS",
        reject: Callable[[dict[str, Any]], str | None] | None = None,
        latency: float = 0.0,
        max_age: float = 300,
    ) -> None:
        self.scheme = scheme
        self.secret = secret or (new_whsec() if scheme == "STANDARD_WEBHOOKS" else f"s-{uuid.uuid4().hex}")
        self.reject = reject
        self.max_age = max_age
        self.deliveries: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.repeats = 0
        super().__init__(latency)

    def target_body(self) -> dict[str, str]:
        """The PUT /v1/targets/WEBHOOK body that makes the service deliver here."""
        return {"url": self.url, "secret": self.secret, "signature_scheme": self.scheme}

    def handle(self, method, path, query, headers, body):
        if method != "POST":
            return 405, None, None
        if "application/json" not in headers.get("content-type", ""):
            self.violation("webhook: no Content-Type application/json")
        if self.scheme == "STANDARD_WEBHOOKS":
            try:
                payload = standardwebhooks.Webhook(self.secret).verify(body, headers)
            except standardwebhooks.WebhookVerificationError as exc:
                # The reference library's reason ("No matching signature found", "Message timestamp
                # too old", ...) is in the answer; the violation is the same for every cause.
                self.violation("webhook: bad signature")
                return 401, {"error": str(exc)}, None
            if set(payload) != {"type", "timestamp", "data"} or payload["type"] not in WEBHOOK_TYPES:
                self.violation(f"webhook: body is not {{type, timestamp, data}}: {sorted(payload)}")
            try:
                datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            except (KeyError, ValueError, AttributeError):
                self.violation("webhook: timestamp is not RFC 3339")
            kind, data = payload.get("type", ""), payload.get("data") or {}
        else:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(headers.get("x-signature-256", ""), expected):
                self.violation("webhook: bad signature")
                return 401, {"error": "bad signature"}, None
            payload = json.loads(body)
            if str(payload.get("timestamp")) != headers.get("x-signature-timestamp"):
                self.violation("webhook: signed timestamp differs from X-Signature-Timestamp")
            if abs(time.time() - float(payload.get("timestamp", 0))) > self.max_age:
                self.violation("webhook: stale timestamp")
                return 401, {"error": "stale"}, None
            kind, data = payload.get("event", ""), payload
        key = headers.get("x-idempotency-key")
        if not key or key != data.get("idempotency_key"):
            self.violation("webhook: X-Idempotency-Key missing or not the payload's")
        refused = self.reject(data) if self.reject else None
        if refused:
            return 422, {"error": refused}, None
        if key in self.deliveries:
            self.repeats += 1
        else:
            self.deliveries[key] = data
            self.events.append((kind, headers.get("webhook-id", ""), data))
        return 200, {"reference": f"WH-{list(self.deliveries).index(key) + 1}"}, None


# -- what the ticket systems post to inbound hooks ----------------------------------------------------


def hub_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: JIRA's X-Hub-Signature and the documented Business
    Rule's X-Signature-256 (docs/integrations.md)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def jira_issue_updated(
    jira: JiraStandIn,
    key: str,
    secret: str,
    *,
    category: str = "done",
    status: str = "Done",
    resolution: str | None = "Done",
    assignee: str | None = None,
    identifier: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A `jira:issue_updated` post as Jira sends it to a secret-protected admin webhook: the
    documented envelope (timestamp, webhookEvent, issue_event_type_name, user, issue, changelog),
    X-Hub-Signature over the raw body, and X-Atlassian-Webhook-Identifier (the same on retries)."""
    fields: dict[str, Any] = {
        "summary": jira.issues.get(key, {}).get("summary", "Reconciliation exception"),
        "status": {
            "self": f"{jira.url}/rest/api/2/status/3",
            "name": status,
            "id": "3",
            "statusCategory": {"self": f"{jira.url}/rest/api/2/statuscategory/3", "id": 3, "key": category},
        },
        "resolution": {"self": f"{jira.url}/rest/api/2/resolution/1", "id": "1", "name": resolution}
        if resolution
        else None,
        "assignee": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": assignee, "active": True}
        if assignee
        else None,
    }
    payload = {
        "timestamp": int(time.time() * 1000),
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Ops Lead", "active": True},
        "issue": {"id": "10002", "self": f"{jira.url}/rest/api/2/issue/10002", "key": key, "fields": fields},
        "changelog": {
            "id": "10010",
            "items": [{"field": "status", "fieldtype": "jira", "from": "1", "fromString": "Open", "to": "3"}],
        },
    }
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": hub_signature(secret, body),
        "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4()),
    }
    return body, headers


def servicenow_business_rule_post(
    record: dict[str, Any],
    secret: str,
    *,
    state: str = "6",
    assigned_to: str = "",
    close_notes: str = "",
    updated_on: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """What the Business Rule in docs/integrations.md posts for an incident: its fields as strings
    (display values), signed X-Signature-256 over the raw body."""
    payload = {
        "number": record["number"],
        "sys_id": record["sys_id"],
        "state": state,
        "assigned_to": assigned_to,
        "close_notes": close_notes,
        "correlation_id": record.get("correlation_id", ""),
        "sys_updated_on": updated_on or time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-Signature-256": hub_signature(secret, body)}
