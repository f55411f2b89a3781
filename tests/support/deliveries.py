"""Helpers for the durable-delivery end-to-end tests (API.md §7, docs/delivery.md): a stack whose
workers retry fast, polling a delivery until it reaches a state, and small checks on its log."""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography.fernet import Fernet

from tests.support.dispatch import Tenant
from tests.support.stack import Stack

T = TypeVar("T")

# Retries within fractions of a second, idle workers that look every 0.2 s, a 2 s attempt deadline,
# dispatch calls that wait at most 2 s for first outcomes, and a breaker that stays out of the way.
FAST_ENV = {
    "DELIVERY_RETRY_BASE_SECONDS": "0.2",
    "DELIVERY_POLL_SECONDS": "0.2",
    "DELIVERY_ATTEMPT_TIMEOUT": "2",
    "DELIVERY_LEASE_MARGIN_SECONDS": "2",
    "DISPATCH_WAIT_SECONDS": "2",
    "DISPATCH_BREAKER_FAILURES": "1000",
    "DISPATCH_BREAKER_RESET_SECONDS": "1",
}
FINAL = ("DELIVERED", "FAILED", "CANCELLED")


def delivery_env(**env: str) -> dict[str, str]:
    return {**FAST_ENV, "TARGET_SECRETS_KEY": Fernet.generate_key().decode(), **env}


@contextmanager
def delivery_stack(url: str, work: Path, **env: str) -> Iterator[Stack]:
    with Stack(url, delivery_env(**env), work_dir=work) as stack:
        yield stack


def wait_for(condition: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Polls until condition() is truthy and returns it; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        time.sleep(0.05)


def get_delivery(tenant: Tenant, delivery_id: str) -> dict[str, Any]:
    response = tenant.http.get(f"/v1/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_state(tenant: Tenant, delivery_id: str, *states: str, timeout: float = 20.0) -> dict[str, Any]:
    """The delivery once it is in one of `states` (default: any final state)."""
    wanted = states or FINAL
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = get_delivery(tenant, delivery_id)
        return last if last["state"] in wanted else None

    try:
        return wait_for(reached, timeout, f"delivery {delivery_id} in {wanted}")
    except AssertionError:
        raise AssertionError(f"delivery never reached {wanted}: {last}") from None


def deliveries_of(tenant: Tenant, exception_id: str) -> list[dict[str, Any]]:
    response = tenant.http.get(f"/v1/exceptions/{exception_id}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def only_delivery(tenant: Tenant, exception_id: str) -> dict[str, Any]:
    [delivery] = deliveries_of(tenant, exception_id)
    return delivery


def outcomes(delivery: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in delivery["attempts"]]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(c)[0] == "C" for c in text)


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(metrics_port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
