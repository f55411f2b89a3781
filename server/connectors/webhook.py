"""Signed webhooks: POST the exception as JSON to the tenant's URL (API.md §9).

STANDARD_WEBHOOKS (the default, standardwebhooks.com): `webhook-id` (the delivery id, the same on
every attempt), `webhook-timestamp` (Unix seconds, fresh per attempt) and `webhook-signature`:
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the whsec_ secret's bytes, one per
signing secret, space-separated (two while a rotated secret's overlap lasts). Body:
`{"type": "exception.dispatched", "timestamp": RFC 3339, "data": {...}}`.

HMAC_SHA256_HEX (receivers built for the earlier form): `X-Signature-256: sha256=<hex HMAC-SHA256 of
the raw body>` keyed by the secret's characters; the body carries `timestamp` (Unix seconds, also in
X-Signature-Timestamp) so the signed material includes the time.

Both send X-Idempotency-Key with the dispatch marker: a delivery repeated after a lost answer or a
crash has the same key (and webhook-id), and receivers drop repeats by it. A 2xx answer
acknowledges; a JSON answer with a string `reference` (or `id`) names the receiver's ticket,
otherwise the reference is derived from the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from server.connectors import tickets
from server.connectors.http import TargetHttp, as_domain_error, json_or_empty
from server.connectors.resilience import AttemptState, Rejected, Unavailable
from server.connectors.ssrf import AddressRefused
from server.domain.dispatch import ResolutionRequest, TargetSystem, TicketRef, TicketRequest
from server.domain.errors import DomainError
from server.domain.targets import HMAC_SHA256_HEX, TargetConfig, whsec_key

EVENT = "exception.dispatched"
RESOLVED_EVENT = "exception.resolved"


def sign(secret: str, body: bytes) -> str:
    """HMAC_SHA256_HEX: `sha256=<hex HMAC-SHA256 of the body>`, keyed by the secret's characters."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks' `webhook-signature`: `v1,<base64 HMAC>` per secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(whsec_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class WebhookConnector:
    target = TargetSystem.WEBHOOK
    external = True
    batch_size = 1

    def __init__(
        self, config: TargetConfig, http: TargetHttp, clock: Callable[[], float] = time.time
    ) -> None:
        self._http = http
        # One circuit breaker per tenant and target system (resilience.Breakers).
        self._breaker = f"{config.tenant_id}/{self.target.value}"
        self._url = config.setting("url")
        self._config = config
        self._clock = clock

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        return [self._send_one(request) for request in batch]

    def _send_one(self, request: TicketRequest) -> TicketRef | DomainError:
        try:
            return self._http.run(self._breaker, lambda state: self._attempt(request, state))
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "delivery", exc)

    def resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        """`exception.resolved` to the receiver the exception was dispatched to (API.md §9)."""

        def attempt(state: AttemptState) -> TicketRef:
            data = {
                "idempotency_key": request.marker,
                "queue": request.queue,
                "reference": request.ticket,
                "attempt": state.number,
                "exception": tickets.as_json(request.exception),
            }
            response = self._post(RESOLVED_EVENT, data, request.delivery_id, request.marker)
            return TicketRef(request.ticket, acknowledged=True, http_status=response.status_code)

        try:
            return self._http.run(self._breaker, attempt)
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "delivery", exc)

    def _attempt(self, request: TicketRequest, state: AttemptState) -> TicketRef:
        data = {
            "idempotency_key": request.marker,
            "dispatch_key": request.key,
            "queue": request.queue,
            "attempt": state.number,
            "exception": tickets.as_json(request.exception),
        }
        # The delivery id: the same on every attempt of one delivery (API.md §7).
        response = self._post(EVENT, data, request.delivery_id or request.marker, request.marker)
        answer = json_or_empty(response)
        reference = answer.get("reference") or answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(reference, str) or not reference.strip():
            reference = "WEBHOOK-" + hashlib.sha256(request.key.encode()).hexdigest()[:12].upper()
        # Cleaned and cut to 255 characters by the worker before it is stored (domain clean_text).
        return TicketRef(reference, acknowledged=True, http_status=response.status_code)

    def _post(self, event: str, data: dict[str, Any], msg_id: str, marker: str) -> Any:
        now = self._clock()  # fresh per attempt, so each delivery is signed anew
        headers = {"Content-Type": "application/json", "X-Idempotency-Key": marker}
        if self._config.signature_scheme == HMAC_SHA256_HEX:
            body = encode({"event": event, "timestamp": int(now), **data})
            headers["X-Signature-256"] = sign(self._config.secret("secret"), body)
            headers["X-Signature-Timestamp"] = str(int(now))
            headers["webhook-id"] = msg_id
        else:
            moment = datetime.fromtimestamp(now, UTC)
            stamp = moment.isoformat().replace("+00:00", "Z")
            body = encode({"type": event, "timestamp": stamp, "data": data})
            secrets = self._config.signing_secrets(moment)
            headers["webhook-id"] = msg_id
            headers["webhook-timestamp"] = str(int(now))
            headers["webhook-signature"] = standard_signature(secrets, msg_id, int(now), body)
        return self._http.request("POST", self._url, lambda r: r.text, content=body, headers=headers)
