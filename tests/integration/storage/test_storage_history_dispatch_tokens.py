"""SqlHistoryRepository, deliveries (dispatch records) by key, and SqlTokenRepository.

The delivery claims, leases and pages: test_storage_deliveries.py."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from server.domain.delivery import Delivery, DeliveryState
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.history import Action, HistoryEntry
from server.domain.paging import PageAfter
from server.storage.repositories import sort_value

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# -- history ------------------------------------------------------------------------------------


def test_history_round_trip(uow, new_exception):
    e = new_exception()
    entry = HistoryEntry.record(
        e.tenant_id,
        e.id,
        Action.DISPATCH,
        "token-1",
        T0,
        {"status": {"from": "OPEN", "to": "ASSIGNED"}, "amount": Decimal("1.50"), "at": T0, "n": None},
    )
    with uow(write=True) as u:
        u.exceptions.add_many([e])
        u.history.add_many([entry])
        u.history.add_many([])
    with uow(write=False) as u:
        (got,) = u.history.list(e.tenant_id, e.id, None, 10)
    # Decimals and datetimes inside `changes` are stored as the API prints them.
    assert got == replace(
        entry,
        changes={
            "status": {"from": "OPEN", "to": "ASSIGNED"},
            "amount": "1.50",
            "at": "2026-01-01T00:00:00.000000+00:00",
            "n": None,
        },
    )
    assert isinstance(got.action, Action) and got.created_at.tzinfo is UTC


def test_history_is_oldest_first_and_pages_by_keyset(uow, new_exception, new_history):
    e, other = new_exception(), new_exception()
    # Three entries share each timestamp: the id breaks the tie.
    entries = [new_history(e, T0 + timedelta(seconds=i // 3), i=i) for i in range(10)]
    with uow(write=True) as u:
        u.exceptions.add_many([e, other])
        u.history.add_many([*reversed(entries), new_history(other, T0)])
    expected = [h.id for h in sorted(entries, key=lambda h: (h.created_at, h.id))]
    for limit in (1, 3, 10):
        seen, after = [], None
        while True:
            with uow(write=False) as u:
                page = u.history.list(e.tenant_id, e.id, after, limit)
            seen += [h.id for h in page[:limit]]
            if len(page) <= limit:
                break
            after = PageAfter(sort_value(page[limit - 1], "created_at"), page[limit - 1].id)
        assert seen == expected


def test_history_is_per_tenant(uow, new_exception, new_history):
    e = new_exception("tenant-a")
    with uow(write=True) as u:
        u.exceptions.add_many([e])
        u.history.add_many([new_history(e, T0)])
    with uow(write=False) as u:
        assert u.history.list("tenant-b", e.id, None, 10) == []
        assert u.history.list("tenant-a", "not-a-uuid", None, 10) == []


def test_history_needs_its_exception(uow, new_exception, new_history):
    with pytest.raises(sa.exc.IntegrityError), uow(write=True) as u:
        u.history.add_many([new_history(new_exception(), T0)])


# -- deliveries by dispatch key --------------------------------------------------------------------


def delivery(e, target=TargetSystem.JIRA, queue="REC", **fields) -> Delivery:
    values = {
        "id": str(uuid.uuid4()),
        "tenant_id": e.tenant_id,
        "key": dispatch_key(target, e.id, queue),
        "exception_id": e.id,
        "target_system": target,
        "queue": queue,
        "state": DeliveryState.PENDING,
        "created_at": T0,
        "updated_at": T0,
        "actor_id": "tok-1",
        "next_attempt_at": T0,
    }
    values.update(fields)
    return Delivery(**values)


def test_delivery_add_and_get_by_keys(uow, new_exception):
    a, b = new_exception(), new_exception()
    done = delivery(
        a,
        state=DeliveryState.DELIVERED,
        attempt_count=1,
        next_attempt_at=None,
        external_reference="REC-1",
        acknowledged=True,
        delivered_at=T0 + timedelta(seconds=1),
    )
    pending = delivery(b, TargetSystem.MANUAL, "", last_error="x" * 3000, outcome_unknown=True)
    with uow(write=True) as u:
        u.exceptions.add_many([a, b])
        u.deliveries.add_many([done, pending])
        u.deliveries.add_many([])
    with uow(write=False) as u:
        got = u.deliveries.get_by_keys(a.tenant_id, [done.key, pending.key, done.key, "dispatch:JIRA:nope"])
        assert u.deliveries.get_by_keys("tenant-b", [done.key]) == {}
        assert u.deliveries.get_by_keys(a.tenant_id, []) == {}
    assert got == {done.key: done, pending.key: pending}
    assert isinstance(got[pending.key].target_system, TargetSystem)
    assert isinstance(got[pending.key].state, DeliveryState)
    assert got[done.key].delivered_at.tzinfo is UTC


def test_delivery_update_writes_its_state_never_its_identity(uow, new_exception):
    e = new_exception()
    pending = delivery(e)
    with uow(write=True) as u:
        u.exceptions.add_many([e])
        u.deliveries.add_many([pending])
    later = T0 + timedelta(minutes=5)
    changed = replace(
        pending,
        key="another-key",
        created_at=later,
        queue="OTHER",
        state=DeliveryState.DELIVERED,
        actor_id="tok-2",
        external_reference="REC-9",
        acknowledged=True,
        delivered_at=later,
        updated_at=later,
        next_attempt_at=None,
    )
    with uow(write=True) as u:
        u.deliveries.update_many([changed])
    with uow(write=True) as u:  # write: exercises SELECT ... FOR UPDATE
        got = u.deliveries.get_by_keys(e.tenant_id, [pending.key])[pending.key]
    # Identity, key and creation stay those of the first write.
    assert got == replace(changed, key=pending.key, created_at=T0, queue="REC")


def test_same_key_in_two_tenants(uow, new_exception):
    a, b = new_exception("tenant-a"), new_exception("tenant-b")
    da, db = delivery(a, key="same"), delivery(b, key="same", queue="OTHER")
    with uow(write=True) as u:
        u.exceptions.add_many([a, b])
        u.deliveries.add_many([da, db])
    with uow(write=False) as u:
        assert u.deliveries.get_by_keys("tenant-a", ["same"]) == {"same": da}
        assert u.deliveries.get_by_keys("tenant-b", ["same"]) == {"same": db}


def test_one_delivery_per_tenant_and_key(uow, new_exception):
    e = new_exception()
    with uow(write=True) as u:
        u.exceptions.add_many([e])
        u.deliveries.add_many([delivery(e)])
    with pytest.raises(sa.exc.IntegrityError), uow(write=True) as u:
        u.deliveries.add_many([delivery(e)])  # a second delivery for the same triple
    with pytest.raises(sa.exc.IntegrityError), uow(write=True) as u:
        u.deliveries.add_many([delivery(new_exception())])  # its exception does not exist


# -- tokens -------------------------------------------------------------------------------------


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_tokens_add_find_revoke_count(uow):
    scopes = frozenset({"exceptions:read", "exceptions:write"})
    with uow(write=True) as u:
        assert u.tokens.count() == 0
        u.tokens.add("id-1", "tenant-a", "ci", scopes, digest("secret-1"))
        u.tokens.add("id-2", "tenant-b", "", frozenset(), digest("secret-2"))
    with uow(write=False) as u:
        found = u.tokens.find_by_hash(digest("secret-1"))
        empty = u.tokens.find_by_hash(digest("secret-2"))
        assert u.tokens.find_by_hash(digest("nope")) is None
        assert u.tokens.count() == 2
    assert (found.id, found.tenant_id, found.name, found.scopes, found.revoked_at) == (
        "id-1",
        "tenant-a",
        "ci",
        scopes,
        None,
    )
    assert empty.scopes == frozenset()
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with uow(write=True) as u:
        assert u.tokens.revoke("id-1", now) is True
        assert u.tokens.revoke("id-1", now + timedelta(days=1)) is False  # already revoked
        assert u.tokens.revoke("missing", now) is False
    with uow(write=False) as u:
        assert u.tokens.find_by_hash(digest("secret-1")).revoked_at == now
        assert u.tokens.count() == 2


def test_token_hash_is_unique_and_plaintext_is_not_stored(uow):
    with uow(write=True) as u:
        u.tokens.add("id-1", "tenant-a", "", frozenset(), digest("secret"))
    with pytest.raises(sa.exc.IntegrityError), uow(write=True) as u:
        u.tokens.add("id-2", "tenant-a", "", frozenset(), digest("secret"))
    with uow(write=False) as u:
        dump = repr(u.connection.exec_driver_sql("SELECT * FROM tokens").all())
    assert "secret" not in dump
