"""Signed webhooks: POST the exception as JSON to the tenant's URL.

Signature: X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the shared secret>
(API.md §3). The body carries `timestamp` (Unix seconds, also in X-Signature-Timestamp), so the
signed material includes the time and receivers can refuse old or replayed deliveries.
X-Idempotency-Key carries the dispatch marker: a delivery repeated after a lost answer or a crash
has the same key, and receivers drop repeats by it (a webhook cannot be asked "did you get it?").
A 2xx answer acknowledges; a JSON answer with a string `reference` (or `id`) names the receiver's
ticket, otherwise the reference is derived from the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

from server.connectors import tickets
from server.connectors.http import TargetHttp, as_domain_error, json_or_empty
from server.connectors.resilience import AttemptState, Rejected, Unavailable
from server.connectors.ssrf import AddressRefused
from server.domain.dispatch import TargetSystem, TicketRef, TicketRequest
from server.domain.errors import DomainError
from server.domain.targets import TargetConfig

EVENT = "exception.dispatched"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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
        self._secret = config.secret("secret")
        self._clock = clock

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        return [self._send_one(request) for request in batch]

    def _send_one(self, request: TicketRequest) -> TicketRef | DomainError:
        try:
            return self._http.run(self._breaker, lambda state: self._attempt(request, state))
        except (Rejected, Unavailable, AddressRefused) as exc:
            return as_domain_error(self.target, "delivery", exc)

    def _attempt(self, request: TicketRequest, state: AttemptState) -> TicketRef:
        timestamp = int(self._clock())  # fresh per attempt, so each delivery is signed anew
        payload = {
            "event": EVENT,
            "timestamp": timestamp,
            "idempotency_key": request.marker,
            "dispatch_key": request.key,
            "queue": request.queue,
            "attempt": state.number,
            "exception": tickets.as_json(request.exception),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        response = self._http.request(
            "POST",
            self._url,
            lambda r: r.text,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Signature-256": sign(self._secret, body),
                "X-Signature-Timestamp": str(timestamp),
                "X-Idempotency-Key": request.marker,
                # The delivery id: the same on every attempt of one delivery (API.md §7).
                "webhook-id": request.delivery_id or request.marker,
            },
        )
        answer = json_or_empty(response)
        reference = answer.get("reference") or answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(reference, str) or not reference.strip():
            reference = "WEBHOOK-" + hashlib.sha256(request.key.encode()).hexdigest()[:12].upper()
        # Cleaned and cut to 255 characters by the worker before it is stored (domain clean_text).
        return TicketRef(reference, acknowledged=True, http_status=response.status_code)
