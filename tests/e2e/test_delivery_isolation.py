"""What a bad target must never do to anyone else (API.md §7): a trickling target does not delay other
tenants' calls or health checks, a stalled one holds no SQLite write lock, and one tenant's open
circuit does not stop another tenant's deliveries to the same host. Real stack (REST via Envoy,
server, delivery workers, database) and webhook stand-ins on 127.0.0.1."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.databases import database_urls, sqlite_database
from tests.support.deliveries import (
    delivery_stack,
    get_delivery,
    only_delivery,
    outcomes,
    wait_for,
    wait_state,
)
from tests.support.dispatch import Tenant
from tests.support.standins import Respond, Stall, Trickle, WebhookReceiver

LIVENESS_BOUND = 5.0  # seconds: a call slower than this was held up, not merely slow


@pytest.fixture(params=database_urls())
def database_url(request, tmp_path):
    with request.param(tmp_path) as url:
        yield url


@dataclass
class Traffic:
    """Another tenant's ordinary calls in a loop (create, list, health), each timed."""

    tenant: Tenant
    calls: list[tuple[str, int | str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        kinds = (
            ("create", lambda: self.tenant.http.post("/v1/exceptions", json={"transaction_id": "other"})),
            ("list", lambda: self.tenant.http.get("/v1/exceptions", params={"limit": 5})),
            ("healthz", lambda: self.tenant.http.get("/healthz")),
        )
        while not self._stop.is_set():
            for kind, call in kinds:
                began = time.monotonic()
                try:
                    status: int | str = call().status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.calls.append((kind, status, time.monotonic() - began))

    def stop(self) -> None:
        self._stop.set()


# -- 2. a trickling target ----------------------------------------------------------------------------


def test_a_trickling_target_is_cut_off_at_the_deadline_and_delays_no_one_else(database_url, tmp_path):
    env = {
        "DELIVERY_ATTEMPT_TIMEOUT": "2",
        "DELIVERY_CONCURRENCY": "32",
        "DELIVERY_MAX_PER_HOST": "32",
        "DELIVERY_MAX_PER_TENANT": "8",
        "DISPATCH_WAIT_SECONDS": "10",
    }
    rounds = 2  # every delivery trickles twice (two TIMEOUT attempts), then is answered at once
    with delivery_stack(database_url, tmp_path, **env) as stack, WebhookReceiver() as slow:
        senders = [Tenant(stack) for _ in range(4)]
        others = [Traffic(Tenant(stack)) for _ in range(2)]
        try:
            ids: dict[str, list[str]] = {}
            for sender in senders:
                sender.configure("WEBHOOK", url=slow.url, secret=slow.secret)
                ids[sender.id] = sender.exceptions(8)
            slow.cue(*[Trickle(1.0) for _ in range(32 * rounds)])
            threads = [threading.Thread(target=o.run, daemon=True) for o in others]
            for thread in threads:
                thread.start()
            # 32 single dispatches at once (8 per tenant): each waits for its first outcome.
            with ThreadPoolExecutor(32) as pool:
                answers = list(
                    pool.map(
                        lambda job: job[0].dispatch(job[1], "WEBHOOK"),
                        [(s, eid) for s in senders for eid in ids[s.id]],
                    )
                )
            assert [a.status_code for a in answers] == [202] * 32, [a.text for a in answers[:3]]
            done = {
                a.json()["delivery_id"]: sender
                for a, sender in zip(answers, [s for s in senders for _ in range(8)], strict=True)
            }
            finals = {did: wait_state(sender, did, "DELIVERED", timeout=60) for did, sender in done.items()}
            for other in others:
                other.stop()
            for thread in threads:
                thread.join(30)
        finally:
            for t in [*senders, *(o.tenant for o in others)]:
                t.close()

    timeouts = 0
    for delivery in finals.values():
        *cut, last = delivery["attempts"]
        assert last["outcome"] == "DELIVERED", delivery
        for attempt in cut:
            assert attempt["outcome"] == "TIMEOUT", delivery
            assert 2000 <= attempt["duration_ms"] <= 4000, delivery  # the 2 s deadline, not 100 s
            assert attempt.get("http_status") is None
        timeouts += len(cut)
    assert timeouts == 32 * rounds  # every trickled answer was cut off, none read to its end
    assert slow.violations == []

    calls = [c for o in others for c in o.calls]
    assert {kind for kind, _, _ in calls} == {"create", "list", "healthz"}
    assert len(calls) >= 30, calls  # the other tenants kept going the whole time
    failed = [c for c in calls if c[1] != 200]
    assert failed == [], failed[:5]
    slowest = max(calls, key=lambda c: c[2])
    assert slowest[2] < LIVENESS_BOUND, slowest


# -- 5. a keyed /v1/bulk whose dispatch goes to a stalled target, on SQLite ------------------------------


def test_a_stalled_delivery_from_a_keyed_bulk_holds_no_sqlite_write_lock(tmp_path):
    env = {"DELIVERY_ATTEMPT_TIMEOUT": "30", "DISPATCH_WAIT_SECONDS": "10"}
    with (
        sqlite_database(tmp_path) as url,
        delivery_stack(url, tmp_path, **env) as stack,
        WebhookReceiver() as stalled,
    ):
        tenant, other = Tenant(stack), Tenant(stack)
        try:
            tenant.configure("WEBHOOK", url=stalled.url, secret=stalled.secret)
            single, in_bulk = tenant.exceptions(2)
            stalled.cue(Stall(), Stall())
            requests = [
                {"method": "POST", "url": "/v1/exceptions", "data": {"transaction_id": "in-the-batch"}},
                {
                    "method": "POST",
                    "url": f"/v1/exceptions/{single}/dispatch",
                    "data": {"target_system": "WEBHOOK"},
                },
                {
                    "method": "POST",
                    "url": "/v1/exceptions/bulk/dispatch",
                    "data": {"exception_ids": [in_bulk], "target_system": "WEBHOOK"},
                },
            ]
            began = time.monotonic()
            batch = tenant.http.post(
                "/v1/bulk",
                json={"requests": requests},
                headers={"Idempotency-Key": f"bulk-{uuid.uuid4().hex}"},
            )
            answered_in = time.monotonic() - began
            assert batch.status_code == 200, batch.text
            created, dispatched, bulk_dispatched = batch.json()
            assert created["status"] == 200, created
            # Inside the batch's transaction nothing can be delivered yet: scheduled, at once.
            assert dispatched["status"] == 202, dispatched
            assert dispatched["contents"]["acknowledged"] is False and dispatched["contents"]["delivery_id"]
            assert bulk_dispatched["status"] == 200, bulk_dispatched
            [item] = bulk_dispatched["contents"]["failed"]
            assert item["reason"] == "DELIVERY_SCHEDULED" and item["delivery_id"], item
            assert answered_in < LIVENESS_BOUND  # it did not wait DISPATCH_WAIT_SECONDS for the stall

            # Both attempts are out now, stalled by the target: the workers hold no transaction.
            wait_for(lambda: len(stalled.requests) == 2, 10, "both attempts reaching the target")
            for delivery_id in (dispatched["contents"]["delivery_id"], item["delivery_id"]):
                assert get_delivery(tenant, delivery_id)["state"] == "IN_FLIGHT"
            for n in range(3):
                began = time.monotonic()
                write = other.http.post("/v1/exceptions", json={"transaction_id": f"meanwhile-{n}"})
                took = time.monotonic() - began
                assert write.status_code == 200, write.text
                assert took < 3.0, f"a write waited {took:.1f} s while a delivery was out"
            assert len(stalled.requests) == 2 and stalled.deliveries == {}  # still out
            own = tenant.http.get(f"/v1/exceptions/{created['contents']['id']}")
            assert own.status_code == 200  # the batch committed before anything was sent

            stalled.release()  # the stalled requests are dropped: retried, then delivered
            for delivery_id in (dispatched["contents"]["delivery_id"], item["delivery_id"]):
                delivered = wait_state(tenant, delivery_id, "DELIVERED")
                assert outcomes(delivered) == ["RETRYABLE_ERROR", "DELIVERED"], delivered
            assert len(stalled.deliveries) == 2 and stalled.violations == []
        finally:
            tenant.close()
            other.close()


# -- 10. the circuit breaker is per tenant ----------------------------------------------------------------


def test_one_tenants_open_circuit_does_not_stop_anothers_deliveries_to_the_same_host(tmp_path):
    env = {"DISPATCH_BREAKER_FAILURES": "2", "DISPATCH_BREAKER_RESET_SECONDS": "60"}
    with (
        sqlite_database(tmp_path) as url,
        delivery_stack(url, tmp_path, **env) as stack,
        WebhookReceiver() as host,
    ):
        broken, healthy = Tenant(stack), Tenant(stack)
        try:
            broken.configure("WEBHOOK", url=f"{host.url}/a", secret=host.secret)
            healthy.configure("WEBHOOK", url=f"{host.url}/b", secret=host.secret)
            host.cue(*[Respond(503, {"error": "down"}, path="/a") for _ in range(50)])
            failing = broken.exceptions(2)
            assert broken.bulk_dispatch(failing, "WEBHOOK").status_code == 200

            def circuit_open() -> bool:
                logged = [a for eid in failing for a in only_delivery(broken, eid)["attempts"]]
                return any("circuit open" in a.get("error", "") for a in logged)

            wait_for(circuit_open, 15, "tenant A's circuit opening")
            assert host.count("POST", "/a") == 2  # two failures opened it; later attempts do not call

            fine = healthy.exceptions(3)
            response = healthy.bulk_dispatch(fine, "WEBHOOK")
            assert response.status_code == 200, response.text
            assert response.json()["succeeded"] == fine, response.text
            for eid in fine:
                delivery = only_delivery(healthy, eid)
                assert delivery["state"] == "DELIVERED" and outcomes(delivery) == ["DELIVERED"]
            assert host.count("POST", "/b") == 3 and len(host.deliveries) == 3

            # Meanwhile A's deliveries keep being retried against its open circuit, without a call.
            for eid in failing:
                delivery = only_delivery(broken, eid)
                assert delivery["state"] in ("PENDING", "IN_FLIGHT"), delivery
                assert delivery["last_reason"] == "TARGET_UNAVAILABLE", delivery
            assert host.count("POST", "/a") == 2 and host.violations == []
        finally:
            broken.close()
            healthy.close()
