"""JIRA (REST API v2): create issues one at a time or 50 per call (bulk create), and find issues
created earlier by the label that carries their dispatch marker.

- Create: POST /rest/api/2/issue {"fields": {...}} -> 201 {"id", "key", "self"}.
- Bulk: POST /rest/api/2/issue/bulk {"issueUpdates": [{"fields": ...}]} -> 201 (400 when every
  element failed) {"issues": [{"id", "key", "self"}], "errors": [{"status", "failedElementNumber",
  "elementErrors": {"errorMessages", "errors"}}]}; failedElementNumber indexes the request, and the
  created issues come in request order.
- Errors: {"errorMessages": [...], "errors": {"field": "message"}}.
- Search: Jira Cloud removed GET /rest/api/2/search (410) for /rest/api/2/search/jql; Server and
  Data Center only have the first. Cloud configurations (email set) try /search/jql first, the
  others /search, each falling back to the other on 404/410.
- Resolution (API.md §9): POST /rest/api/2/issue/{key}/comment {"body": text} -> 201; with the
  target's resolve_transition_id, GET /rest/api/2/issue/{key}/transitions (is it available from
  the issue's status?) then POST .../transitions {"transition": {"id"}} -> 204. After an unknown
  outcome the comments are read first (GET .../comment) for the resolution's marker.
- Auth: Cloud basic (email + API token), Server/Data Center bearer (personal access token).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from server.connectors import tickets
from server.connectors.http import TargetHttp, as_domain_error, json_or_empty
from server.connectors.resilience import AttemptState, Rejected, Unavailable
from server.connectors.ssrf import AddressRefused
from server.domain.dispatch import (
    ResolutionRequest,
    TargetDown,
    TargetRejected,
    TargetSystem,
    TicketRef,
    TicketRequest,
)
from server.domain.errors import DomainError
from server.domain.targets import TargetConfig

BULK_LIMIT = 50  # JIRA's own limit for /issue/bulk
CREATE = "/rest/api/2/issue"
BULK = "/rest/api/2/issue/bulk"
SEARCH_CLOUD = "/rest/api/2/search/jql"
SEARCH_SERVER = "/rest/api/2/search"

Result = TicketRef | DomainError


def error_text(body: Any) -> str:
    """The sentence inside a JIRA ErrorCollection: its messages, then its per-field messages."""
    if not isinstance(body, dict):
        return ""
    parts = [str(m) for m in body.get("errorMessages") or []]
    errors = body.get("errors") or {}
    if isinstance(errors, dict):
        parts += [str(v) for v in errors.values()]
    return "; ".join(parts)


def _object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer; {} for anything else (no body, not JSON, an array, ...)."""
    body = json_or_empty(response)
    return body if isinstance(body, dict) else {}


class JiraConnector:
    target = TargetSystem.JIRA
    external = True
    batch_size = BULK_LIMIT

    def __init__(self, config: TargetConfig, http: TargetHttp) -> None:
        self._http = http
        # One circuit breaker per tenant and target system (resilience.Breakers).
        self._breaker = f"{config.tenant_id}/{self.target.value}"
        self._base = config.setting("base_url")
        self._project = config.setting("project_key")
        self._issue_type = config.setting("issue_type") or "Task"
        email, token = config.secret("email"), config.secret("api_token")
        self._auth = httpx.BasicAuth(email, token) if email else None
        self._headers = {"Accept": "application/json"}
        if not email:
            self._headers["Authorization"] = f"Bearer {token}"
        self._searches = [SEARCH_CLOUD, SEARCH_SERVER] if email else [SEARCH_SERVER, SEARCH_CLOUD]
        self._transition = config.setting("resolve_transition_id")

    def resolve(self, request: ResolutionRequest) -> Result:
        try:
            return self._http.run(self._breaker, lambda state: self._resolve(request, state))
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "resolution", exc)

    def _resolve(self, request: ResolutionRequest, state: AttemptState) -> TicketRef:
        issue = f"{self._base}{CREATE}/{quote(request.ticket, safe='')}"
        status = None
        if not ((request.check_existing or state.maybe_created) and self._commented(issue, request.marker)):
            text = tickets.resolution_text(request.exception, request.marker)
            status = self._send("POST", issue + "/comment", json={"body": text}).status_code
        if self._transition:
            available = _object(self._send("GET", issue + "/transitions")).get("transitions") or []
            ids = {str(t.get("id")) for t in available if isinstance(t, dict)}
            # Not available: the issue is already past it (an earlier attempt, or someone in JIRA).
            if self._transition in ids:
                body = {"transition": {"id": self._transition}}
                status = self._send("POST", issue + "/transitions", json=body).status_code
        return TicketRef(request.ticket, acknowledged=True, http_status=status)

    def _commented(self, issue: str, marker: str) -> bool:
        params = {"maxResults": "100", "orderBy": "-created"}
        comments = _object(self._send("GET", issue + "/comment", params=params)).get("comments") or []
        return any(isinstance(c, dict) and f"[{marker}]" in str(c.get("body", "")) for c in comments)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.update(auth=self._auth, headers=self._headers)
        return self._http.request(method, url, lambda r: error_text(json_or_empty(r)), **kwargs)

    # -- the Connector protocol ------------------------------------------------------------------

    def send(self, batch: list[TicketRequest]) -> list[Result]:
        results: list[Result | None] = [None] * len(batch)
        for i, request in enumerate(batch):
            if not (request.queue or self._project):
                results[i] = TargetRejected(
                    "JIRA needs a project: give a queue or configure the target's project_key"
                )
        todo = [i for i in range(len(batch)) if results[i] is None]
        try:
            self._http.run(self._breaker, lambda state: self._attempt(batch, todo, results, state))
        except (Rejected, Unavailable, AddressRefused) as exc:
            error = as_domain_error(self.target, "issue", exc)
            for i in todo:
                if results[i] is None:
                    results[i] = error
        return [
            r if r is not None else TargetDown("JIRA gave no answer for the issue", maybe_created=True)
            for r in results
        ]

    # -- one attempt -----------------------------------------------------------------------------

    def _attempt(
        self, batch: list[TicketRequest], todo: list[int], results: list[Result | None], state: AttemptState
    ) -> None:
        pending = [i for i in todo if results[i] is None]
        # Before creating, adopt what exists: tickets an earlier call may have made (a crash, or an
        # earlier attempt of this call whose answer was lost).
        check = [i for i in pending if batch[i].check_existing or state.maybe_created]
        if check:
            found = self._find([batch[i].marker for i in check])
            for i in check:
                if batch[i].marker in found:
                    results[i] = TicketRef(found[batch[i].marker], acknowledged=True)
        pending = [i for i in todo if results[i] is None]
        if len(pending) == 1:
            results[pending[0]] = self._create_one(batch[pending[0]])
        elif pending:
            self._create_bulk(batch, pending, results)

    def _fields(self, request: TicketRequest) -> dict[str, Any]:
        e = request.exception
        return {
            "project": {"key": request.queue or self._project},
            "summary": tickets.summary(e),
            "description": tickets.description(e, request.key),  # v2 takes plain text (v3: ADF)
            "issuetype": {"name": self._issue_type},
            "priority": {"name": tickets.JIRA_PRIORITY[e.severity]},
            "labels": [request.marker],
        }

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self._http.request(
            "POST",
            self._base + path,
            lambda r: error_text(json_or_empty(r)),
            json=body,
            auth=self._auth,
            headers=self._headers,
        )

    def _create_one(self, request: TicketRequest) -> Result:
        try:
            response = self._post(CREATE, {"fields": self._fields(request)})
        except Rejected as exc:
            return as_domain_error(self.target, "issue", exc)
        key = _object(response).get("key")
        if not isinstance(key, str) or not key:
            return TargetDown("JIRA answered without an issue key", maybe_created=True)
        return TicketRef(key, acknowledged=True, http_status=response.status_code)

    def _create_bulk(
        self, batch: list[TicketRequest], pending: list[int], results: list[Result | None]
    ) -> None:
        body = {"issueUpdates": [{"fields": self._fields(batch[i])} for i in pending]}
        try:
            response = self._post(BULK, body)
            created = _object(response)
        except Rejected as exc:
            # 400 when every element failed: the body still says which and why.
            created = exc.body if isinstance(exc.body, dict) else {}
            if not created.get("errors"):
                error = as_domain_error(self.target, "issue", exc)
                for i in pending:
                    results[i] = error
                return
        failed: dict[int, DomainError] = {}
        for item in created.get("errors") or []:
            number = item.get("failedElementNumber") if isinstance(item, dict) else None
            if isinstance(number, int) and 0 <= number < len(pending):
                text = error_text(item.get("elementErrors"))
                failed[number] = as_domain_error(
                    self.target, "issue", Rejected(int(item.get("status") or 400), text)
                )
        keys = [x.get("key") for x in created.get("issues") or [] if isinstance(x, dict)]
        issues = [k for k in keys if isinstance(k, str) and k]
        succeeded = [n for n in range(len(pending)) if n not in failed]
        for n, error in failed.items():
            results[pending[n]] = error
        if len(issues) == len(keys) == len(succeeded):
            for n, key in zip(succeeded, issues, strict=True):
                results[pending[n]] = TicketRef(key, acknowledged=True)
            return
        # The answer does not line up with the request: ask JIRA which markers have issues now.
        found = self._find([batch[pending[n]].marker for n in succeeded])
        for n in succeeded:
            marker = batch[pending[n]].marker
            results[pending[n]] = (
                TicketRef(found[marker], acknowledged=True)
                if marker in found
                else TargetDown("JIRA's answer did not name the issue", maybe_created=True)
            )

    def _find(self, markers: list[str]) -> dict[str, str]:
        """marker -> issue key of the issues labelled with those markers (the oldest wins)."""
        if not markers:
            return {}
        jql = "labels in ({}) ORDER BY created ASC".format(", ".join(f'"{m}"' for m in markers))
        params = {"jql": jql, "fields": "labels,created", "maxResults": str(2 * len(markers) + 10)}
        for position, path in enumerate(self._searches):
            try:
                response = self._http.request(
                    "GET",
                    self._base + path,
                    lambda r: error_text(json_or_empty(r)),
                    params=params,
                    auth=self._auth,
                    headers=self._headers,
                )
            except Rejected as exc:
                if exc.status in (404, 410) and position == 0:
                    continue  # this JIRA has the other search endpoint
                raise
            found: dict[str, str] = {}
            wanted = set(markers)
            for issue in _object(response).get("issues") or []:
                fields = issue.get("fields") if isinstance(issue, dict) else None
                key = issue.get("key") if isinstance(issue, dict) else None
                if not isinstance(fields, dict) or not isinstance(key, str) or not key:
                    continue
                for label in fields.get("labels") or []:
                    if isinstance(label, str) and label in wanted and label not in found:
                        found[label] = key
            return found
        return {}
