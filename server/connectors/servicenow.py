"""ServiceNow (Table API): one record per exception in the configured table (default `incident`),
found again by correlation_id.

- Create: POST /api/now/table/{table} (JSON field values) -> 201 {"result": {"sys_id", "number", ...}}.
- Query: GET /api/now/table/{table}?sysparm_query=correlation_idIN<a>,<b>&sysparm_fields=...
  -> 200 {"result": [...]} (an empty list when nothing matches).
- Errors: {"error": {"message", "detail"}, "status": "failure"}.
- Resolution (API.md §9): GET ...?sysparm_query=number=<n> for its sys_id and state; unless it
  is already resolved or closed (6, 7), PATCH /api/now/table/{table}/{sys_id} {"state": "6",
  "close_code", "close_notes"} -> 200. Looking first makes a retry after a lost answer a no-op.
- Auth: basic (username, password). The Table API has no bulk insert, so batches are single items.
"""

from __future__ import annotations

from typing import Any

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

FIELDS = "sys_id,number,correlation_id"
RESOLVED_STATE = "6"
CLOSED_STATES = ("6", "7")
DEFAULT_CLOSE_CODE = "Solved (Permanently)"


def error_text(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    message, detail = str(error.get("message") or ""), str(error.get("detail") or "")
    return f"{message}: {detail}" if message and detail else message or detail


def _reference(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    value = record.get("number") or record.get("sys_id")
    return value if isinstance(value, str) and value else None


class ServiceNowConnector:
    target = TargetSystem.SERVICENOW
    external = True
    batch_size = 1

    def __init__(self, config: TargetConfig, http: TargetHttp) -> None:
        self._http = http
        # One circuit breaker per tenant and target system (resilience.Breakers).
        self._breaker = f"{config.tenant_id}/{self.target.value}"
        self._url = f"{config.setting('instance_url')}/api/now/table/{config.setting('table') or 'incident'}"
        self._auth = httpx.BasicAuth(config.secret("username"), config.secret("password"))
        self._headers = {"Accept": "application/json"}
        self._close_code = config.setting("resolve_close_code") or DEFAULT_CLOSE_CODE

    def resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        try:
            return self._http.run(self._breaker, lambda state: self._resolve(request))
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "resolution", exc)

    def _resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        query = {"sysparm_query": f"number={request.ticket}", "sysparm_limit": "1"}
        query["sysparm_fields"] = "sys_id,state"
        records = json_or_empty(self._request("GET", params=query)).get("result") or []
        record = records[0] if records and isinstance(records[0], dict) else None
        if record is None or not isinstance(record.get("sys_id"), str):
            return TargetRejected(f"SERVICENOW has no record {request.ticket} in this table")
        if str(record.get("state")) in CLOSED_STATES:
            return TicketRef(request.ticket, acknowledged=True)  # already resolved or closed
        body = {
            "state": RESOLVED_STATE,
            "close_code": self._close_code,
            "close_notes": tickets.resolution_text(request.exception, request.marker),
        }
        response = self._http.request(
            "PATCH",
            f"{self._url}/{record['sys_id']}",
            lambda r: error_text(json_or_empty(r)),
            params={"sysparm_fields": "sys_id,number,state"},
            json=body,
            auth=self._auth,
            headers=self._headers,
        )
        return TicketRef(request.ticket, acknowledged=True, http_status=response.status_code)

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        return [self._send_one(request) for request in batch]

    def _send_one(self, request: TicketRequest) -> TicketRef | DomainError:
        try:
            return self._http.run(self._breaker, lambda state: self._attempt(request, state))
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "record", exc)

    def _attempt(self, request: TicketRequest, state: AttemptState) -> TicketRef | DomainError:
        if request.check_existing or state.maybe_created:
            found = self._find([request.marker])
            if request.marker in found:
                return TicketRef(found[request.marker], acknowledged=True)
        e = request.exception
        urgency, impact = tickets.SERVICENOW_URGENCY_IMPACT[e.severity]
        body = {
            "short_description": tickets.summary(e),
            "description": tickets.description(e, request.key),
            "urgency": urgency,
            "impact": impact,
            "correlation_id": request.marker,
            "correlation_display": "reconrouter",
        }
        if request.queue:
            # A reference field: the group's sys_id, or its name (ServiceNow looks names up).
            body["assignment_group"] = request.queue
        response = self._request("POST", json=body)
        reference = _reference(json_or_empty(response).get("result"))
        if reference is None:
            return TargetDown("SERVICENOW answered without a record number", maybe_created=True)
        return TicketRef(reference, acknowledged=True, http_status=response.status_code)

    def _request(self, method: str, **kwargs: Any) -> httpx.Response:
        params = {"sysparm_fields": FIELDS, **kwargs.pop("params", {})}
        return self._http.request(
            method,
            self._url,
            lambda r: error_text(json_or_empty(r)),
            params=params,
            auth=self._auth,
            headers=self._headers,
            **kwargs,
        )

    def _find(self, markers: list[str]) -> dict[str, str]:
        query = {
            "sysparm_query": f"correlation_idIN{','.join(markers)}^ORDERBYsys_created_on",
            "sysparm_limit": str(2 * len(markers) + 10),
        }
        found: dict[str, str] = {}
        for record in json_or_empty(self._request("GET", params=query)).get("result") or []:
            marker, reference = record.get("correlation_id"), _reference(record)
            if marker in markers and marker not in found and reference:
                found[marker] = reference
        return found
