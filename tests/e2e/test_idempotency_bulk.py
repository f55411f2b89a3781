"""API.md §5 on POST /v1/bulk over REST: the batch call takes a key like any mutating route, and each
sub-request may carry its own key, which behaves exactly as on the direct call."""

import json
import uuid

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import exceptions as exceptions_table
from tests.e2e.conftest import error_reason

REPLAYED = "x-idempotency-replayed"


@pytest.fixture(scope="module")
def db(stack):
    engine = make_engine(stack.database_url, pool_size=2)
    yield engine
    engine.dispose()


def rows_with(db, transaction_id: str) -> int:
    with db.connect() as conn:
        query = sa.select(sa.func.count()).where(exceptions_table.c.transaction_id == transaction_id)
        return conn.execute(query).scalar_one()


def create_request(txn: str, headers: dict | None = None, **fields) -> dict:
    item = {"url": "/v1/exceptions", "method": "POST", "data": json.dumps({"transaction_id": txn, **fields})}
    if headers:
        item["headers"] = headers
    return item


def test_a_keyed_batch_is_replayed_whole(api, db):
    txn, key = f"bulk-{uuid.uuid4().hex}", f"bulk-{uuid.uuid4().hex}"
    body = {"requests": [create_request(txn), create_request(txn)]}
    first = api.post("/v1/bulk", json=body, headers={"X-Idempotency-Key": key})
    again = api.post("/v1/bulk", json=body, headers={"X-Idempotency-Key": key})
    assert (first.status_code, first.headers[REPLAYED]) == (200, "false")
    assert (again.status_code, again.headers[REPLAYED]) == (200, "true")
    assert again.content == first.content
    assert rows_with(db, txn) == 2  # the batch ran once: two creates, not four
    changed = api.post(
        "/v1/bulk", json={"requests": [create_request(txn)]}, headers={"X-Idempotency-Key": key}
    )
    assert changed.status_code == 422 and error_reason(changed) == "IDEMPOTENCY_KEY_REUSED"


def test_a_sub_request_key_behaves_as_on_the_direct_call(api, db):
    txn, key = f"sub-{uuid.uuid4().hex}", f"sub-{uuid.uuid4().hex}"
    # Its first use fails (bad currency): the key is freed with the sub-request's writes.
    failed = api.post(
        "/v1/bulk", json={"requests": [create_request(txn, {"Idempotency-Key": key}, currency="X")]}
    )
    assert failed.status_code == 200 and failed.json()[0]["status"] == 400
    body = {"requests": [create_request(txn, {"Idempotency-Key": key})]}
    [first] = api.post("/v1/bulk", json=body).json()
    [again] = api.post("/v1/bulk", json=body).json()
    assert (first["status"], first["headers"][REPLAYED]) == (200, "false")
    assert (again["status"], again["headers"][REPLAYED]) == (200, "true")
    assert again["contents"] == first["contents"]
    direct = api.post("/v1/exceptions", json={"transaction_id": txn}, headers={"X-Idempotency-Key": key})
    assert direct.headers[REPLAYED] == "true" and direct.json() == first["contents"]  # one key, one scope
    assert rows_with(db, txn) == 1
