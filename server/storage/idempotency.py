"""Idempotency keys in SQL: claim, complete, release, purge (API.md §5, rules in domain/idempotency.py).

Why it is safe across processes and replicas sharing one database:
- A key is claimed by INSERT ... ON CONFLICT DO NOTHING on its primary key, in a short transaction
  of its own that commits before the call runs, so of any number of concurrent claims exactly one
  inserts, and every other caller sees the committed claim at once (409, not a wait).
- The stored response is written by `complete()` inside the call's own transaction (`transaction()`),
  so the handler's writes and the response commit together or not at all.
- Taking over an expired or abandoned key, completing and releasing are compare-and-swaps on the
  claim's `locked_at`: of two retries only one takes a key over, and an attempt that lost its claim
  can neither complete nor release the new owner's.
- On SQLite the claim commits before the call's write transaction opens (BEGIN IMMEDIATE would
  otherwise queue behind it), and a key that is already stored is read without the write lock.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from server.domain.idempotency import (
    Claim,
    Decision,
    KeyInUse,
    KeyRecord,
    KeyScope,
    KeyState,
    Policy,
    StoredResponse,
    decide,
)
from server.storage.tables import idempotency_keys as t
from server.storage.uow import SqlUnitOfWork, SqlUnitOfWorkFactory

if TYPE_CHECKING:
    from server.domain.idempotency import KeyStore

# Each lost race means the row changed under us; after this many the key is plainly busy.
_CLAIM_ATTEMPTS = 3
_PURGE_BATCH = 1000


def _where(scope: KeyScope) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.tenant_id == scope.tenant_id, t.c.rpc == scope.rpc, t.c.key == scope.key)


def _owned_by(claim: Claim) -> sa.ColumnElement[bool]:
    return sa.and_(
        _where(claim.scope), t.c.state == KeyState.IN_PROGRESS.value, t.c.locked_at == claim.locked_at
    )


def _record(scope: KeyScope, row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        scope=scope,
        fingerprint=row.fingerprint,
        state=KeyState(row.state),
        locked_at=row.locked_at,
        expires_at=row.expires_at,
        response=row.response,
        response_type=row.response_type,
    )


class SqlIdempotencyStore:
    """Implements server.domain.idempotency.KeyStore."""

    def __init__(self, uow: SqlUnitOfWorkFactory, policy: Policy) -> None:
        self._uow = uow
        self.policy = policy

    # -- the call's life ---------------------------------------------------------------------

    def claim(self, scope: KeyScope, fingerprint: str, now: datetime) -> Claim | StoredResponse:
        """Claims the key for this attempt, or returns the response to replay.

        Raises KeyInUse (409) or KeyReused (422), see domain.idempotency.decide.
        """
        for _ in range(_CLAIM_ATTEMPTS):
            existing = self.find(scope)
            if existing is None:
                if self._insert(scope, fingerprint, now):
                    return Claim(scope, now)
                continue  # another attempt inserted it just now: look at what it is
            if decide(existing, fingerprint, now, self.policy) is Decision.REPLAY:
                assert existing.response is not None and existing.response_type is not None
                return StoredResponse(existing.response, existing.response_type)
            if self._take_over(existing, fingerprint, now):
                return Claim(scope, now)
        raise KeyInUse()

    def transaction(self) -> AbstractContextManager[SqlUnitOfWork]:
        """The call's unit of work: the handler's units of work join it, and `complete` writes
        the response into it. Open it after `claim` (see the module docstring)."""
        return self._uow.outer(write=True)

    def complete(
        self, tx: SqlUnitOfWork, claim: Claim, response: bytes, response_type: str, now: datetime
    ) -> None:
        """Stores the response in the call's transaction `tx`. Raises KeyInUse when the claim was
        taken over meanwhile (the call outlived the lock timeout): the caller's transaction must then
        roll back, so that only the new owner's work ever commits."""
        stmt = (
            sa.update(t)
            .where(_owned_by(claim))
            .values(
                state=KeyState.COMPLETED.value,
                response=response,
                response_type=response_type,
                expires_at=now + self.policy.ttl,
            )
        )
        if tx.connection.execute(stmt).rowcount != 1:
            raise KeyInUse("the request outlived the idempotency lock timeout and a retry took it over")

    def release(self, claim: Claim) -> bool:
        """Frees the key of a failed call (no-op if the claim was taken over meanwhile)."""
        # Joins the enclosing transaction when the call is itself part of one (a /v1/bulk
        # sub-request), whose claim lives there too; otherwise a short transaction of its own.
        with self._uow(write=True) as uow:
            return uow.connection.execute(sa.delete(t).where(_owned_by(claim))).rowcount == 1

    # -- reading and housekeeping --------------------------------------------------------------

    def find(self, scope: KeyScope) -> KeyRecord | None:
        with self._uow(write=False) as uow:
            row = uow.connection.execute(sa.select(t).where(_where(scope))).first()
        return None if row is None else _record(scope, row)

    def purge(self, now: datetime) -> int:
        """Deletes expired keys in short batches (each its own transaction, so a large backlog
        never holds SQLite's writer lock for long). Returns how many were deleted."""
        deleted = 0
        while True:
            with self._uow(write=True, join=False) as uow:
                batch = self._purge_batch(uow.connection, now)
            deleted += batch
            if batch < _PURGE_BATCH:
                return deleted

    # -- statements ----------------------------------------------------------------------------

    def _insert(self, scope: KeyScope, fingerprint: str, now: datetime) -> bool:
        # Same joining rule as release(): the claim must commit before the call's own transaction
        # opens, which is the case whenever no enclosing transaction exists.
        with self._uow(write=True) as uow:
            conn = uow.connection
            insert = postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)
            stmt = insert.values(
                tenant_id=scope.tenant_id, rpc=scope.rpc, key=scope.key, **self._claim(fingerprint, now)
            ).on_conflict_do_nothing(index_elements=[t.c.tenant_id, t.c.rpc, t.c.key])
            # RETURNING rather than rowcount: psycopg reports -1 for INSERT ... ON CONFLICT here.
            return conn.execute(stmt.returning(t.c.key)).first() is not None

    def _claim(self, fingerprint: str, now: datetime) -> dict:
        """The columns of a fresh in-progress claim (a new row, or one taken over)."""
        return {
            "fingerprint": fingerprint,
            "state": KeyState.IN_PROGRESS.value,
            "response": None,
            "response_type": None,
            "locked_at": now,
            "expires_at": self.policy.claim_expiry(now),
            "created_at": now,
        }

    def _take_over(self, existing: KeyRecord, fingerprint: str, now: datetime) -> bool:
        """Compare-and-swap: succeeds only if the row is still exactly what `decide` looked at."""
        stmt = (
            sa.update(t)
            .where(
                _where(existing.scope),
                t.c.state == existing.state.value,
                t.c.locked_at == existing.locked_at,
            )
            .values(**self._claim(fingerprint, now))
        )
        with self._uow(write=True) as uow:
            return uow.connection.execute(stmt).rowcount == 1

    @staticmethod
    def _purge_batch(conn: Connection, now: datetime) -> int:
        pk = sa.tuple_(t.c.tenant_id, t.c.rpc, t.c.key)
        expired = sa.select(t.c.tenant_id, t.c.rpc, t.c.key).where(t.c.expires_at <= now).limit(_PURGE_BATCH)
        # Row-value IN (subquery): one statement, supported by SQLite 3.15+ and PostgreSQL.
        return conn.execute(sa.delete(t).where(pk.in_(expired))).rowcount


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _conforms(store: SqlIdempotencyStore) -> KeyStore:
        return store
