"""A server process that dies between doing the work and storing the response, for real.

Run as `python -m tests.e2e.test_idempotency_crash serve` it is the normal server, except that the
process exits on the spot (os._exit, no cleanup, like a kill -9) when it is about to store the
response of a call whose key starts with `crash-`: the handler's rows are written but uncommitted.

The tests check what API.md §5 promises: nothing of the crashed call is committed; its claim keeps
the key in use until the lock timeout; then a retry runs exactly once and later repeats replay it.
Also the purge command, and that an expired key behaves as new. A dispatch is the exception to
"nothing committed": its deliveries commit before the call waits (API.md §7), so the keyed retry
joins them and answers from their state, and the target gets one ticket (docs/delivery.md).
"""

import os
import sys
import time
import uuid
from datetime import timedelta

import grpc
import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from reconrouter.exceptions.v1 import exceptions_pb2 as pb
from reconrouter.exceptions.v1 import exceptions_pb2_grpc

from server.services.clock import utc_now
from server.storage.engine import make_engine
from server.storage.tables import exceptions as exceptions_table
from server.storage.tables import idempotency_keys
from tests.e2e.conftest import error_reason
from tests.support.databases import database_urls
from tests.support.deliveries import deliveries_of, wait_state
from tests.support.dispatch import TUNED_ENV, Tenant
from tests.support.stack import Stack
from tests.support.standins import WebhookReceiver

CRASH_EXIT_CODE = 70
THIS_MODULE = "tests.e2e.test_idempotency_crash"


def _die_before_storing_crash_keys() -> None:
    from server.storage.idempotency import SqlIdempotencyStore

    original = SqlIdempotencyStore.complete

    def complete(self, tx, claim, *args, **kwargs):
        if claim.scope.key.startswith("crash-"):
            os._exit(CRASH_EXIT_CODE)
        return original(self, tx, claim, *args, **kwargs)

    SqlIdempotencyStore.complete = complete


@pytest.fixture(params=database_urls())
def database_url(request, tmp_path):
    with request.param(tmp_path) as url:
        yield url


def count(engine, column, value) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(column == value)).scalar_one()


def key_state(engine, key):
    with engine.connect() as conn:
        return conn.execute(sa.select(idempotency_keys.c.state).where(idempotency_keys.c.key == key)).scalar()


def restart(stack: Stack, module: str, **env: str) -> None:
    stack.stop_server()
    stack.server_module = module
    stack.extra_env.update(env)
    stack.start_server()


def post_until_not(client, statuses, *args, deadline_seconds=30, **kwargs) -> httpx.Response:
    """Repeats the request while the answer is one of `statuses` (a lock timeout passing, Envoy noticing
    a restarted server), up to a deadline; returns the first other answer."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        response = client.post(*args, **kwargs)
        if response.status_code not in statuses or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_crash_before_the_response_is_stored_commits_nothing_and_the_retry_runs_once(
    database_url, tmp_path
):
    stack = Stack(database_url, {"IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "3600"}, work_dir=tmp_path / "stack")
    stack.server_module = THIS_MODULE
    engine = make_engine(database_url, pool_size=1)
    with stack:
        token = stack.create_token("crash", ["exceptions:read", "exceptions:write"])
        txn, key = f"crash-{uuid.uuid4().hex}", f"crash-{uuid.uuid4().hex}"
        with grpc.insecure_channel(stack.grpc_target) as channel:
            stub = exceptions_pb2_grpc.ExceptionsServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateException(
                    pb.CreateExceptionRequest(transaction_id=txn),
                    metadata=[("authorization", f"Bearer {token}"), ("x-idempotency-key", key)],
                    timeout=30,
                )
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert stack.server_process.wait(timeout=30) == CRASH_EXIT_CODE  # died where it was told to
        assert count(engine, exceptions_table.c.transaction_id, txn) == 0  # the work did not commit
        assert key_state(engine, key) == "in_progress"  # the claim outlives the process

        client = httpx.Client(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        body, headers = {"transaction_id": txn}, {"X-Idempotency-Key": key}
        # Back up, with a long lock timeout: the dead process's claim still holds the key.
        restart(stack, "server")
        busy = post_until_not(client, {503}, "/v1/exceptions", json=body, headers=headers)
        assert busy.status_code == 409 and error_reason(busy) == "IDEMPOTENCY_KEY_IN_USE"
        # With a 1 s lock timeout the abandoned claim is soon free, and the retry takes it over.
        restart(stack, "server", IDEMPOTENCY_LOCK_TIMEOUT_SECONDS="1")
        retry = post_until_not(client, {409, 503}, "/v1/exceptions", json=body, headers=headers)
        assert (retry.status_code, retry.headers["x-idempotency-replayed"]) == (200, "false"), retry.text
        again = client.post("/v1/exceptions", json=body, headers=headers)
        assert (again.status_code, again.headers["x-idempotency-replayed"]) == (200, "true")
        assert again.content == retry.content
        assert count(engine, exceptions_table.c.transaction_id, txn) == 1  # ran exactly once

        # Retention: once the stored response has expired, `purge` deletes it and the key is new again.
        with engine.begin() as conn:
            conn.execute(
                sa.update(idempotency_keys)
                .where(idempotency_keys.c.key == key)
                .values(expires_at=utc_now() - timedelta(seconds=1))
            )
        live_key = f"live-{uuid.uuid4().hex}"
        assert (
            client.post("/v1/exceptions", json=body, headers={"X-Idempotency-Key": live_key}).status_code
            == 200
        )
        purged = stack.cli("purge")
        assert "purged 1 expired idempotency keys" in purged.stderr
        assert key_state(engine, key) is None and key_state(engine, live_key) == "completed"
        fresh = client.post("/v1/exceptions", json=body, headers=headers)
        assert (fresh.status_code, fresh.headers["x-idempotency-replayed"]) == (200, "false")
        assert count(engine, exceptions_table.c.transaction_id, txn) == 3  # + live_key's + the fresh one
        client.close()
    engine.dispose()


def test_a_dispatch_that_dies_before_its_answer_is_stored_is_answered_from_its_deliveries(
    database_url, tmp_path
):
    env = {
        **TUNED_ENV,
        "TARGET_SECRETS_KEY": Fernet.generate_key().decode(),
        "IDEMPOTENCY_LOCK_TIMEOUT_SECONDS": "1",
        "DISPATCH_WAIT_SECONDS": "1",
    }
    stack = Stack(database_url, env, work_dir=tmp_path / "stack")
    stack.server_module = THIS_MODULE
    with stack, WebhookReceiver() as receiver:
        tenant = Tenant(stack)
        tenant.configure("WEBHOOK", url=receiver.url, secret=receiver.secret)
        delivered_id, scheduled_id = tenant.exceptions(2)

        # 1. Delivered within the call's wait, then the process dies before storing the answer.
        key = {"X-Idempotency-Key": f"crash-{uuid.uuid4().hex}"}
        assert tenant.dispatch(delivered_id, "WEBHOOK", **key).status_code == 503  # Envoy: upstream gone
        assert stack.server_process.wait(timeout=30) == CRASH_EXIT_CODE
        assert len(receiver.deliveries) == 1
        restart(stack, "server")
        retry = post_until_not(
            tenant.http,
            {409, 503},  # the dead call's key is in use until its lock timeout (1 s)
            f"/v1/exceptions/{delivered_id}/dispatch",
            json={"target_system": "WEBHOOK", "queue": ""},
            headers=key,
        )
        assert (retry.status_code, retry.headers["x-idempotency-replayed"]) == (200, "false"), retry.text
        [delivery] = deliveries_of(tenant, delivered_id)
        body = retry.json()
        assert body["acknowledged"] is True and body["delivery_id"] == delivery["id"]
        assert body["external_reference"] == delivery["external_reference"] == "WH-1"
        assert receiver.count("POST", "/") == 1  # answered from the delivery, not sent again
        again = tenant.dispatch(delivered_id, "WEBHOOK", **key)
        assert again.headers["x-idempotency-replayed"] == "true" and again.content == retry.content

        # 2. Still pending (the target is paused) when the process dies before storing the answer.
        assert tenant.http.post("/v1/targets/WEBHOOK/pause").json()["paused"] is True
        restart(stack, THIS_MODULE)
        key = {"X-Idempotency-Key": f"crash-{uuid.uuid4().hex}"}
        bulk = {"exception_ids": [scheduled_id], "target_system": "WEBHOOK"}
        assert tenant.http.post("/v1/exceptions/bulk/dispatch", json=bulk, headers=key).status_code == 503
        assert stack.server_process.wait(timeout=30) == CRASH_EXIT_CODE
        restart(stack, "server")
        retry = post_until_not(
            tenant.http, {409, 503}, "/v1/exceptions/bulk/dispatch", json=bulk, headers=key
        )
        assert (retry.status_code, retry.headers["x-idempotency-replayed"]) == (200, "false"), retry.text
        [delivery] = deliveries_of(tenant, scheduled_id)  # joined: still one delivery
        [failed] = retry.json()["failed"]
        assert (failed["reason"], failed["delivery_id"]) == ("DELIVERY_SCHEDULED", delivery["id"])
        assert failed["next_attempt_at"] and delivery["state"] == "PENDING"
        assert tenant.http.post("/v1/targets/WEBHOOK/resume").json()["paused"] is False
        assert wait_state(tenant, delivery["id"], "DELIVERED")["external_reference"] == "WH-2"
        assert len(receiver.deliveries) == 2 and receiver.count("POST", "/") == 2
        assert receiver.violations == []
        tenant.close()


if __name__ == "__main__":
    _die_before_storing_crash_keys()
    from server.__main__ import main

    sys.exit(main())
