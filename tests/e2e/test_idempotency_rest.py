"""API.md §5 over REST through the real Envoy and server (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set). Executions are counted in the database, not read off the responses."""

import hashlib
import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from google.protobuf import json_format
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.services.clock import utc_now
from server.storage.engine import make_engine
from server.storage.tables import exception_history, idempotency_keys
from server.storage.tables import exceptions as exceptions_table
from tests.e2e.conftest import error_reason

REPLAYED = "x-idempotency-replayed"


@pytest.fixture(scope="module")
def db(stack):
    engine = make_engine(stack.database_url, pool_size=2)
    yield engine
    engine.dispose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def rows_with(db, transaction_id: str) -> int:
    with db.connect() as conn:
        query = sa.select(sa.func.count()).where(exceptions_table.c.transaction_id == transaction_id)
        return conn.execute(query).scalar_one()


def key_row(db, key: str):
    with db.connect() as conn:
        return conn.execute(sa.select(idempotency_keys).where(idempotency_keys.c.key == key)).first()


def post(api, path, body, **headers):
    return api.post(path, json=body, headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_a_repeat_returns_the_stored_response_and_runs_nothing(api, db):
    txn, key = unique("txn"), unique("k")
    first = post(api, "/v1/exceptions", {"transaction_id": txn}, X_Idempotency_Key=key)
    again = post(api, "/v1/exceptions", {"transaction_id": txn}, X_Idempotency_Key=key)
    assert (first.status_code, first.headers[REPLAYED]) == (200, "false")
    assert (again.status_code, again.headers[REPLAYED]) == (200, "true")
    assert again.content == first.content  # the same body, byte for byte
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert rows_with(db, txn) == 1


def test_idempotency_key_header_is_accepted_when_x_idempotency_key_is_absent(api, db):
    txn, key = unique("txn"), unique("k")
    first = post(api, "/v1/exceptions", {"transaction_id": txn}, Idempotency_Key=key)
    again = post(api, "/v1/exceptions", {"transaction_id": txn}, X_Idempotency_Key=key)
    assert (first.headers[REPLAYED], again.headers[REPLAYED]) == ("false", "true")
    assert again.json() == first.json() and rows_with(db, txn) == 1


def test_snake_case_and_camel_case_bodies_are_one_request(api, create, db):
    ids = [create()["id"] for _ in range(3)]
    key = unique("k")
    snake = post(
        api,
        "/v1/exceptions/bulk/dispatch",
        {"exception_ids": ids, "target_system": "MANUAL"},
        X_Idempotency_Key=key,
    )
    camel = post(
        api,
        "/v1/exceptions/bulk/dispatch",
        {"targetSystem": "MANUAL", "exceptionIds": ids},
        X_Idempotency_Key=key,
    )
    assert (snake.status_code, snake.headers[REPLAYED]) == (200, "false")
    assert (camel.status_code, camel.headers[REPLAYED]) == (200, "true")
    assert camel.content == snake.content and snake.json()["succeeded"] == ids
    with db.connect() as conn:
        dispatched = conn.execute(
            sa.select(sa.func.count()).where(
                exception_history.c.exception_id.in_(ids), exception_history.c.action == "DISPATCH"
            )
        ).scalar_one()
    assert dispatched == 3  # one DISPATCH entry per exception: the second request ran nothing
    key2 = unique("k")
    first = post(api, "/v1/exceptions", {"transaction_id": key2, "currency": "EUR"}, X_Idempotency_Key=key2)
    second = post(api, "/v1/exceptions", {"transactionId": key2, "currency": "EUR"}, X_Idempotency_Key=key2)
    assert (first.headers[REPLAYED], second.headers[REPLAYED]) == ("false", "true")


def test_the_same_key_with_another_body_is_422(api, db):
    txn, key = unique("txn"), unique("k")
    post(api, "/v1/exceptions", {"transaction_id": txn}, X_Idempotency_Key=key)
    changed = post(api, "/v1/exceptions", {"transaction_id": txn + "-2"}, X_Idempotency_Key=key)
    assert changed.status_code == 422 and error_reason(changed) == "IDEMPOTENCY_KEY_REUSED"
    assert REPLAYED not in changed.headers
    assert rows_with(db, txn + "-2") == 0


def test_in_use_while_another_process_holds_the_key_then_free_after_the_lock_timeout(api, db):
    txn, key = unique("txn"), unique("k")
    body = {"transaction_id": txn}
    # The claim another server process would hold while it runs this very request. The fingerprint
    # is the request message's, so it is computed from the JSON exactly as Envoy transcodes it.
    message = json_format.Parse(json.dumps(body), pb.CreateExceptionRequest())
    now = utc_now()
    with db.begin() as conn:
        conn.execute(
            sa.insert(idempotency_keys).values(
                tenant_id="acme",
                rpc="/reconrouter.exceptions.v1.ExceptionsService/CreateException",
                key=key,
                fingerprint=hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest(),
                state="in_progress",
                locked_at=now,
                expires_at=now + timedelta(days=1),
                created_at=now,
            )
        )
    busy = post(api, "/v1/exceptions", body, X_Idempotency_Key=key)
    assert busy.status_code == 409 and error_reason(busy) == "IDEMPOTENCY_KEY_IN_USE"
    assert rows_with(db, txn) == 0
    # That process died: once its claim is older than the lock timeout (60 s here) a retry runs.
    with db.begin() as conn:
        conn.execute(
            sa.update(idempotency_keys)
            .where(idempotency_keys.c.key == key)
            .values(locked_at=now - timedelta(seconds=61))
        )
    retry = post(api, "/v1/exceptions", body, X_Idempotency_Key=key)
    assert (retry.status_code, retry.headers[REPLAYED]) == (200, "false")
    assert rows_with(db, txn) == 1 and key_row(db, key).state == "completed"


def test_a_failed_request_frees_its_key(api, db):
    txn, key = unique("txn"), unique("k")
    bad = post(api, "/v1/exceptions", {"transaction_id": txn, "currency": "DOLLARS"}, X_Idempotency_Key=key)
    assert bad.status_code == 400 and REPLAYED not in bad.headers
    assert key_row(db, key) is None
    fixed = post(api, "/v1/exceptions", {"transaction_id": txn, "currency": "USD"}, X_Idempotency_Key=key)
    assert (fixed.status_code, fixed.headers[REPLAYED]) == (200, "false")
    assert rows_with(db, txn) == 1


@pytest.mark.parametrize("header", ["X-Idempotency-Key", "Idempotency-Key"])
@pytest.mark.parametrize("bad", ["has space", "k" * 256, "slash/key", "semi;colon", "dot.key"])
def test_a_malformed_key_is_400_invalid_idempotency_key(api, db, header, bad):
    txn = unique("txn")
    response = api.post("/v1/exceptions", json={"transaction_id": txn}, headers={header: bad})
    assert response.status_code == 400
    assert error_reason(response) == "INVALID_IDEMPOTENCY_KEY"
    assert rows_with(db, txn) == 0


def test_a_malformed_second_header_is_refused_even_beside_a_good_one(api, db):
    txn = unique("txn")
    headers = {"X-Idempotency-Key": unique("good"), "Idempotency-Key": "has space"}
    response = api.post("/v1/exceptions", json={"transaction_id": txn}, headers=headers)
    assert response.status_code == 400
    assert error_reason(response) == "INVALID_IDEMPOTENCY_KEY"
    assert "Idempotency-Key" in response.json()["message"]
    assert rows_with(db, txn) == 0
    both_good = {"X-Idempotency-Key": unique("good"), "Idempotency-Key": unique("other")}
    assert api.post("/v1/exceptions", json={"transaction_id": txn}, headers=both_good).status_code == 200


def test_without_a_key_a_request_simply_runs(api, db):
    txn = unique("txn")
    one = post(api, "/v1/exceptions", {"transaction_id": txn})
    two = post(api, "/v1/exceptions", {"transaction_id": txn})
    assert (one.status_code, two.status_code) == (200, 200)
    assert REPLAYED not in one.headers and one.json()["id"] != two.json()["id"]
    assert rows_with(db, txn) == 2


def test_get_routes_ignore_keys(api, create):
    e = create()
    for key in ("read-1", "read-1", "not a key!"):
        response = api.get(f"/v1/exceptions/{e['id']}", headers={"X-Idempotency-Key": key})
        assert response.status_code == 200 and REPLAYED not in response.headers
    listing = api.get("/v1/exceptions", headers={"Idempotency-Key": "read-2"})
    assert listing.status_code == 200 and REPLAYED not in listing.headers


def test_the_callback_needs_a_key_and_repeated_deliveries_apply_once(api, create, db):
    e = create()
    sent = post(api, f"/v1/exceptions/{e['id']}/dispatch", {"target_system": "MANUAL"})
    assert sent.status_code == 200, sent.text
    body = {
        "external_system": "MANUAL",
        "external_issue_id": sent.json()["external_reference"],
        "status": "RESOLVED",
        "resolution_notes": "fixed",
    }
    missing = post(api, f"/v1/exceptions/{e['id']}/callback", body)
    assert missing.status_code == 400 and error_reason(missing) == "INVALID_IDEMPOTENCY_KEY"
    delivery = unique("delivery")
    first = post(api, f"/v1/exceptions/{e['id']}/callback", body, Idempotency_Key=delivery)
    again = post(api, f"/v1/exceptions/{e['id']}/callback", body, Idempotency_Key=delivery)
    assert (first.status_code, first.json(), first.headers[REPLAYED]) == (
        200,
        {"status": "accepted"},
        "false",
    )
    assert (again.status_code, again.headers[REPLAYED]) == (200, "true")
    with db.connect() as conn:
        callbacks = conn.execute(
            sa.select(sa.func.count()).where(
                exception_history.c.exception_id == e["id"], exception_history.c.action == "CALLBACK"
            )
        ).scalar_one()
    assert callbacks == 1
