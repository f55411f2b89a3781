"""Exactly once across processes: two server processes (each behind its own Envoy) on one database,
PostgreSQL and one SQLite file, receive many concurrent requests with one key. The database must
hold exactly one execution; every answer is a 409 or the same response."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.tables import exceptions as exceptions_table
from server.storage.tables import idempotency_keys
from tests.e2e.conftest import error_reason
from tests.support.databases import database_urls
from tests.support.stack import Stack

REQUESTS = 24  # spread over both processes
ROUNDS = 3  # independent keys, each a fresh race
BATCH = 300  # exceptions created by one execution


@pytest.fixture(scope="module", params=database_urls())
def two_processes(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("idem-processes")
    with (
        request.param(work) as url,
        Stack(url, work_dir=work / "a") as a,
        Stack(url, work_dir=work / "b") as b,
    ):
        yield a, b


def race(clients, path, body, headers):
    barrier = threading.Barrier(len(clients))

    def send(client):
        barrier.wait()  # released together, so the requests overlap
        return client.post(path, json=body, headers=headers)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(send, clients))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_of_concurrent_requests_with_one_key_over_two_processes_exactly_one_runs(two_processes, round_):
    a, b = two_processes
    token = a.create_token(f"race-{uuid.uuid4().hex[:8]}", ["exceptions:read", "exceptions:write"])
    auth = {"Authorization": f"Bearer {token}"}
    clients = [
        httpx.Client(base_url=(a, b)[i % 2].base_url, headers=auth, timeout=60) for i in range(REQUESTS)
    ]
    try:
        for client in clients:  # connections open before the race, so the requests start together
            assert client.get("/healthz").status_code == 200
        txn, key = f"race-{uuid.uuid4().hex}", f"race-{uuid.uuid4().hex}"
        # A batch large enough that one execution takes a while, so the others arrive while it runs.
        body = {"exceptions": [{"transaction_id": txn}] * BATCH}
        path, headers = "/v1/exceptions/bulk/create", {"X-Idempotency-Key": key}
        answers = race(clients, path, body, headers)
        final = clients[0].post(path, json=body, headers=headers)
    finally:
        for client in clients:
            client.close()

    engine = make_engine(a.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            executions = conn.execute(
                sa.select(sa.func.count()).where(exceptions_table.c.transaction_id == txn)
            ).scalar_one()
            state = conn.execute(
                sa.select(idempotency_keys.c.state).where(idempotency_keys.c.key == key)
            ).scalar_one()
    finally:
        engine.dispose()
    assert executions == BATCH  # one execution's rows, not two
    assert state == "completed"

    ok = [r for r in answers if r.status_code == 200]
    conflicts = [r for r in answers if r.status_code == 409]
    assert len(ok) + len(conflicts) == REQUESTS, [(r.status_code, r.text) for r in answers]
    assert all(error_reason(r) == "IDEMPOTENCY_KEY_IN_USE" for r in conflicts)
    assert [r.headers["x-idempotency-replayed"] for r in ok].count("false") == 1
    assert {r.content for r in ok} == {final.content}  # every success is the one stored response
    assert final.headers["x-idempotency-replayed"] == "true"
