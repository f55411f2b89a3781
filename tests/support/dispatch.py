"""Helpers for the dispatch end-to-end tests: a stack tuned for fast failures, tenants, exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from server.domain.auth import SCOPES
from tests.support.stack import Stack

# Short timeouts and waits so that failure paths finish quickly; a small breaker that resets soon.
# (The Stack's own defaults already make delivery retries quick: DELIVERY_RETRY_BASE_SECONDS=0.2.)
TUNED_ENV = {
    "DISPATCH_CONNECT_TIMEOUT_SECONDS": "1",
    "DISPATCH_READ_TIMEOUT_SECONDS": "1",
    # One attempt's total deadline, and how long a dead worker's lease outlives it.
    "DELIVERY_ATTEMPT_TIMEOUT": "2",
    "DELIVERY_LEASE_MARGIN_SECONDS": "2",
    # Retries never more than 2 s apart (full jitter below it; a target's Retry-After still rules).
    "DELIVERY_RETRY_MAX_WAIT_SECONDS": "2",
    "DISPATCH_BREAKER_FAILURES": "5",
    "DISPATCH_BREAKER_RESET_SECONDS": "1",
    "LOG_LEVEL": "DEBUG",  # the most a secret could leak into; the tests grep for them
}


@contextmanager
def dispatch_stack(url: str, work: Path, **env: str) -> Iterator[Stack]:
    settings = {**TUNED_ENV, "TARGET_SECRETS_KEY": Fernet.generate_key().decode(), **env}
    with Stack(url, settings, work_dir=work) as stack:
        yield stack


class Tenant:
    """A fresh tenant with every scope, talking REST through Envoy."""

    def __init__(self, stack: Stack, scopes: tuple[str, ...] = SCOPES) -> None:
        self.id = f"t-{uuid.uuid4().hex[:10]}"
        self.token = stack.create_token(self.id, list(scopes))
        self.http = httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )

    def close(self) -> None:
        self.http.close()

    def configure(self, target: str, **body: str) -> httpx.Response:
        response = self.http.put(f"/v1/targets/{target}", json=body)
        assert response.status_code == 200, response.text
        return response

    def exceptions(self, count: int, **fields) -> list[str]:
        items = []
        for i in range(count):
            item = {"transaction_id": f"txn-{i}", "amount": "1250.00", "currency": "USD", **fields}
            if callable(item["transaction_id"]):
                item["transaction_id"] = item["transaction_id"](i)
            items.append(item)
        response = self.http.post("/v1/exceptions/bulk/create", json={"exceptions": items})
        assert response.status_code == 200, response.text
        return [e["id"] for e in response.json()["exceptions"]]

    def dispatch(self, exception_id: str, target: str, queue: str = "", **headers: str) -> httpx.Response:
        return self.http.post(
            f"/v1/exceptions/{exception_id}/dispatch",
            json={"target_system": target, "queue": queue},
            headers=headers,
        )

    def bulk_dispatch(self, ids: list[str], target: str, queue: str = "") -> httpx.Response:
        return self.http.post(
            "/v1/exceptions/bulk/dispatch",
            json={"exception_ids": ids, "target_system": target, "queue": queue},
        )
