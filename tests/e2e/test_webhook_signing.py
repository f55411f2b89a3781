"""Standard Webhooks end to end (API.md §9), through Envoy, the server and its database: a generated
whsec_ secret shown once, deliveries the reference `standardwebhooks` library accepts before, during
and after a rotation (both secrets sign during the overlap), the same webhook-id on every attempt,
and the previous `X-Signature-256` scheme per target."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
import standardwebhooks

from server.storage.engine import make_engine
from server.storage.tables import idempotency_keys
from tests.support.databases import database_urls
from tests.support.deliveries import delivery_stack, wait_for, wait_state
from tests.support.dispatch import Tenant
from tests.support.standins import Respond, WebhookReceiver


@pytest.fixture(scope="module", params=database_urls())
def stack(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("webhooks")
    with request.param(work) as url, delivery_stack(url, work, LOG_LEVEL="DEBUG") as running:
        yield running


@pytest.fixture
def tenant(stack):
    t = Tenant(stack)
    yield t
    t.close()


def verifies(secret: str, request) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    except standardwebhooks.WebhookVerificationError:
        return False
    return True


def dispatch_one(tenant: Tenant, receiver: WebhookReceiver) -> str:
    (exception_id,) = tenant.exceptions(1)
    response = tenant.dispatch(exception_id, "WEBHOOK")
    assert response.status_code == 200, response.text
    return exception_id


def test_a_generated_secret_signs_deliveries_the_reference_library_accepts_across_a_rotation(stack, tenant):
    with WebhookReceiver() as receiver:
        put = tenant.http.put("/v1/targets/WEBHOOK", json={"url": receiver.url})
        assert put.status_code == 200, put.text
        first = put.json()["secret"]
        assert first.startswith("whsec_") and put.json()["signature_scheme"] == "STANDARD_WEBHOOKS"
        assert put.json()["configured_secrets"] == ["secret"]
        # Shown once: never again on GET, list or a later PUT that keeps it.
        assert "secret" not in tenant.http.get("/v1/targets/WEBHOOK").json()
        assert first not in tenant.http.get("/v1/targets").text
        assert "secret" not in tenant.http.put("/v1/targets/WEBHOOK", json={"url": receiver.url}).json()
        receiver.secret = first

        before = dispatch_one(tenant, receiver)
        assert [d["exception"]["id"] for d in receiver.deliveries.values()] == [before]
        ((kind, _, _),) = receiver.events
        assert kind == "exception.dispatched"

        rotated = tenant.http.post("/v1/targets/WEBHOOK/rotate-secret", json={})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["secret"]
        assert second.startswith("whsec_") and second != first
        assert "previous_secret_expires_at" in rotated.json()
        assert "secret" not in tenant.http.get("/v1/targets/WEBHOOK").json()

        during = dispatch_one(tenant, receiver)  # the receiver still verifies with the old secret
        last = receiver.requests[-1]
        assert len(last.headers["webhook-signature"].split(" ")) == 2
        assert verifies(first, last) and verifies(second, last)

        receiver.secret = second  # the receiver switches over while both sign
        after = dispatch_one(tenant, receiver)
        assert verifies(second, receiver.requests[-1])
        assert [d["exception"]["id"] for d in receiver.deliveries.values()] == [before, during, after]
        assert receiver.violations == []
    logs = stack.logs()
    assert first not in logs and second not in logs


def test_every_attempt_of_a_delivery_has_the_same_webhook_id_and_each_verifies(stack, tenant):
    with WebhookReceiver() as receiver:
        receiver.secret = tenant.http.put("/v1/targets/WEBHOOK", json={"url": receiver.url}).json()["secret"]
        receiver.cue(Respond(503))
        (exception_id,) = tenant.exceptions(1)
        response = tenant.dispatch(exception_id, "WEBHOOK")
        assert response.status_code in (200, 202), response.text
        path = f"/v1/exceptions/{exception_id}/deliveries"
        delivery_id = (
            response.json().get("delivery_id")
            or wait_for(lambda: tenant.http.get(path).json()["items"], what="delivery")[0]["id"]
        )
        wait_state(tenant, delivery_id, "DELIVERED")
        assert len(receiver.requests) == 2
        assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery_id}
        assert all(verifies(receiver.secret, r) for r in receiver.requests)
        assert receiver.violations == []


def test_the_previous_hex_scheme_stays_available_per_target(stack, tenant):
    with WebhookReceiver(scheme="HMAC_SHA256_HEX") as receiver:
        put = tenant.http.put("/v1/targets/WEBHOOK", json=receiver.target_body())
        assert put.status_code == 200 and put.json()["signature_scheme"] == "HMAC_SHA256_HEX"
        assert "secret" not in put.json()  # given, not generated: never echoed
        dispatch_one(tenant, receiver)
        assert receiver.requests[-1].headers["x-signature-256"].startswith("sha256=")
        assert len(receiver.deliveries) == 1 and receiver.violations == []


def test_rotation_is_for_configured_webhooks_only(stack, tenant):
    missing = tenant.http.post("/v1/targets/WEBHOOK/rotate-secret", json={})
    assert missing.status_code == 404, missing.text
    manual = tenant.http.post("/v1/targets/JIRA/rotate-secret", json={})
    assert manual.status_code == 422 and manual.json()["details"][0]["reason"] == "INVALID_STATE"


def test_a_replayed_put_does_not_show_the_generated_secret_again_and_none_is_stored(stack, tenant):
    key = {"Idempotency-Key": f"put-{uuid.uuid4().hex}"}
    with WebhookReceiver() as receiver:
        first = tenant.http.put("/v1/targets/WEBHOOK", json={"url": receiver.url}, headers=key)
        replay = tenant.http.put("/v1/targets/WEBHOOK", json={"url": receiver.url}, headers=key)
    secret = first.json()["secret"]
    assert first.headers["X-Idempotency-Replayed"] == "false" and secret.startswith("whsec_")
    assert replay.headers["X-Idempotency-Replayed"] == "true" and "secret" not in replay.json()
    assert replay.json()["url"] == first.json()["url"]
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            stored = [r.response for r in conn.execute(sa.select(idempotency_keys.c.response)) if r.response]
    finally:
        engine.dispose()
    assert stored and not any(secret.encode() in blob for blob in stored)
