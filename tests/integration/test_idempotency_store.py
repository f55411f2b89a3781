"""The SQL idempotency store on SQLite and PostgreSQL: races between claims, takeover
compare-and-swaps, a claim that outlived its lock, and the purge."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.domain.idempotency import Claim, KeyInUse, KeyReused, KeyScope, Policy, StoredResponse
from server.storage.engine import make_engine
from server.storage.idempotency import SqlIdempotencyStore
from server.storage.migrate import upgrade
from server.storage.tables import idempotency_keys, tokens
from server.storage.uow import SqlUnitOfWorkFactory
from tests.support.databases import database_urls

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy.of_seconds(ttl=3600, lock_timeout=60)
THREADS = 16


@pytest.fixture(scope="module", params=database_urls())
def engine(request, tmp_path_factory):
    with request.param(tmp_path_factory.mktemp("idem-store")) as url:
        upgrade(url)
        engine = make_engine(url, pool_size=THREADS)
        yield engine
        engine.dispose()


@pytest.fixture
def store(engine):
    with engine.begin() as conn:
        conn.execute(idempotency_keys.delete())
        conn.execute(tokens.delete())
    return SqlIdempotencyStore(SqlUnitOfWorkFactory(engine), POLICY)


def scope(key="k") -> KeyScope:
    return KeyScope("tenant-a", "/pkg.Service/Method", key)


def race(n, fn):
    """Runs fn(i) on n threads released together; returns results or the exceptions raised."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_of_concurrent_claims_of_a_new_key_exactly_one_wins(store):
    results = race(THREADS, lambda i: store.claim(scope(), "fp", T0))
    assert sum(isinstance(r, Claim) for r in results) == 1
    assert all(isinstance(r, Claim | KeyInUse) for r in results), results


def test_of_concurrent_takeovers_of_an_abandoned_claim_exactly_one_wins(store):
    store.claim(scope(), "fp", T0)
    later = T0 + timedelta(seconds=61)
    results = race(THREADS, lambda i: store.claim(scope(), "fp", later))
    winners = [r for r in results if isinstance(r, Claim)]
    assert len(winners) == 1 and winners[0].locked_at == later
    assert all(isinstance(r, Claim | KeyInUse) for r in results), results


def add_row(store_, tx) -> None:
    tx.tokens.add(str(uuid.uuid4()), "tenant-a", "work", frozenset(), uuid.uuid4().hex)


def committed_rows(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(tokens)).scalar_one()


def test_complete_commits_with_the_work_and_later_claims_replay_it(store, engine):
    claim = store.claim(scope(), "fp", T0)
    with store.transaction() as tx:
        add_row(store, tx)
        store.complete(tx, claim, b"answer", "pkg.Answer", T0 + timedelta(seconds=1))
    assert store.claim(scope(), "fp", T0 + timedelta(seconds=2)) == StoredResponse(b"answer", "pkg.Answer")
    with pytest.raises(KeyReused):
        store.claim(scope(), "other", T0 + timedelta(seconds=2))
    assert store.find(scope()).expires_at == T0 + timedelta(seconds=1) + POLICY.ttl
    assert committed_rows(engine) == 1


def test_a_call_that_outlived_its_claim_cannot_complete_and_its_work_rolls_back(store, engine):
    slow = store.claim(scope(), "fp", T0)
    retry = store.claim(scope(), "fp", T0 + timedelta(seconds=61))  # took the key over
    with pytest.raises(KeyInUse), store.transaction() as tx:
        add_row(store, tx)
        store.complete(tx, slow, b"slow", "pkg.Answer", T0 + timedelta(seconds=62))
    assert committed_rows(engine) == 0
    assert not store.release(slow)  # nor can it free the key the retry now holds
    with store.transaction() as tx:
        add_row(store, tx)
        store.complete(tx, retry, b"retry", "pkg.Answer", T0 + timedelta(seconds=62))
    assert committed_rows(engine) == 1
    assert store.claim(scope(), "fp", T0 + timedelta(seconds=63)) == StoredResponse(b"retry", "pkg.Answer")


def test_release_frees_the_key_for_any_request(store):
    claim = store.claim(scope(), "fp", T0)
    assert store.release(claim)
    assert store.find(scope()) is None
    assert isinstance(store.claim(scope(), "another body", T0), Claim)


def test_an_expired_key_is_claimed_again_as_new(store):
    claim = store.claim(scope(), "fp", T0)
    with store.transaction() as tx:
        store.complete(tx, claim, b"old", "pkg.Answer", T0)
    fresh = store.claim(scope(), "new body", T0 + POLICY.ttl)
    assert isinstance(fresh, Claim)
    assert store.find(scope()).fingerprint == "new body"


def test_purge_deletes_expired_keys_in_batches_and_keeps_live_ones(store, engine):
    expired_completed = [
        {
            "tenant_id": "tenant-a",
            "rpc": "/pkg.Service/Method",
            "key": f"old-{i}",
            "fingerprint": "fp",
            "state": "completed",
            "response": b"r",
            "response_type": "pkg.Answer",
            "locked_at": T0,
            "expires_at": T0 + timedelta(hours=1),
            "created_at": T0,
        }
        for i in range(2500)  # more than one purge batch
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(idempotency_keys), expired_completed)
    abandoned = store.claim(scope("abandoned"), "fp", T0)  # expires at T0 + max(ttl, lock timeout)
    live = store.claim(scope("live"), "fp", T0 + timedelta(hours=1))
    with store.transaction() as tx:
        store.complete(tx, live, b"r", "pkg.Answer", T0 + timedelta(hours=1))
    assert abandoned.locked_at == T0
    assert store.purge(T0 + timedelta(hours=1)) == 2501
    assert [r.key for r in store_keys(engine)] == ["live"]
    assert store.purge(T0 + timedelta(hours=1)) == 0
    assert store.purge(T0 + timedelta(hours=2)) == 1


def store_keys(engine):
    with engine.connect() as conn:
        return list(conn.execute(sa.select(idempotency_keys.c.key)))
