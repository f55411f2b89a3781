"""Deliveries and their attempts (API.md §7): the outbox the dispatch routes write and the workers
drain.

Claiming: due deliveries are PENDING ones whose next attempt is due, and IN_FLIGHT ones whose lease
expired (the worker holding it died). On PostgreSQL the candidates are locked FOR UPDATE SKIP
LOCKED, so workers of several replicas claim disjoint sets without waiting for each other; on
SQLite the write transaction (BEGIN IMMEDIATE) already makes one claimer at a time. Deliveries of a
paused target are never due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from server.domain.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import TargetSystem
from server.domain.paging import PageAfter
from server.storage.repositories._common import canonical_uuid, canonical_uuids, keyset_after, of_tenant
from server.storage.tables import deliveries as t
from server.storage.tables import delivery_attempts as a
from server.storage.tables import targets

if TYPE_CHECKING:
    from server.domain.ports import DeliveryRepository

LOST_ATTEMPT = "the attempt did not finish: its worker stopped and the lease expired"


def _from_row(r: Row[Any], attempts: tuple[Attempt, ...] = ()) -> Delivery:
    return Delivery(
        id=r.id,
        tenant_id=r.tenant_id,
        key=r.key,
        exception_id=r.exception_id,
        target_system=TargetSystem(r.target_system),
        queue=r.queue,
        state=DeliveryState(r.state),
        created_at=r.created_at,
        updated_at=r.updated_at,
        actor_id=r.actor_id,
        attempt_count=r.attempt_count,
        next_attempt_at=r.next_attempt_at,
        horizon_at=r.horizon_at,
        outcome_unknown=r.outcome_unknown,
        last_error=r.last_error or "",
        last_reason=r.last_reason or "",
        external_reference=r.external_reference,
        acknowledged=r.acknowledged,
        delivered_at=r.delivered_at,
        lease_owner=r.lease_owner,
        lease_expires_at=r.lease_expires_at,
        attempts=attempts,
    )


def _to_row(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "tenant_id": d.tenant_id,
        "key": d.key,
        "exception_id": d.exception_id,
        "target_system": d.target_system.value,
        "queue": d.queue,
        "state": d.state.value,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "actor_id": d.actor_id,
        "attempt_count": d.attempt_count,
        "next_attempt_at": d.next_attempt_at,
        "horizon_at": d.horizon_at,
        "outcome_unknown": d.outcome_unknown,
        "last_error": d.last_error or None,
        "last_reason": d.last_reason or None,
        "external_reference": d.external_reference,
        "acknowledged": d.acknowledged,
        "delivered_at": d.delivered_at,
        "lease_owner": d.lease_owner,
        "lease_expires_at": d.lease_expires_at,
    }


def _attempt_from_row(r: Row[Any]) -> Attempt:
    return Attempt(
        number=r.number,
        started_at=r.started_at,
        duration_ms=r.duration_ms,
        outcome=AttemptOutcome(r.outcome),
        http_status=r.http_status,
        error=r.error or "",
    )


# What a state change may write (identity, key and creation stay those of the first write).
MUTABLE_FIELDS = (
    "state",
    "updated_at",
    # Who asked for the current round (a revived delivery is the new caller's): the history names them.
    "actor_id",
    "attempt_count",
    "next_attempt_at",
    "horizon_at",
    "outcome_unknown",
    "last_error",
    "last_reason",
    "external_reference",
    "acknowledged",
    "delivered_at",
    "lease_owner",
    "lease_expires_at",
)


class SqlDeliveryRepository:
    def __init__(self, connection: Connection, *, lock_rows: bool = False) -> None:
        self._conn = connection
        self._lock_rows = lock_rows  # see SqlExceptionRepository

    # -- the request side ------------------------------------------------------------------------

    def get_by_keys(self, tenant_id: str, keys: Iterable[str]) -> dict[str, Delivery]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        # By key (ix_deliveries_key), the tenant checked on each row: see of_tenant.
        stmt = sa.select(t).where(t.c.key.in_(wanted), of_tenant(t.c.tenant_id, tenant_id))
        if self._lock_rows:
            stmt = stmt.order_by(t.c.key).with_for_update()
        return {r.key: _from_row(r) for r in self._conn.execute(stmt)}

    def get_many(
        self, tenant_id: str, ids: Iterable[str], *, with_attempts: bool = False
    ) -> dict[str, Delivery]:
        wanted = canonical_uuids(ids)
        if not wanted:
            return {}
        # By primary key, the tenant checked on each row (of_tenant: never a tenant index walk, which
        # cost 20-25 ms for the 100 ids a dispatch's wait polls; docs/benchmarks.md). Rows of another
        # tenant fail the check before they are locked.
        stmt = sa.select(t).where(t.c.id.in_(wanted), of_tenant(t.c.tenant_id, tenant_id))
        if self._lock_rows:
            stmt = stmt.order_by(t.c.id).with_for_update()
        rows = list(self._conn.execute(stmt))
        attempts = self._attempts([r.id for r in rows]) if with_attempts else {}
        return {r.id: _from_row(r, attempts.get(r.id, ())) for r in rows}

    def get(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        return self.get_many(tenant_id, [delivery_id], with_attempts=True).get(
            canonical_uuid(delivery_id) or ""
        )

    def add_many(self, deliveries: list[Delivery]) -> None:
        if deliveries:
            self._conn.execute(sa.insert(t), [_to_row(d) for d in deliveries])

    def update_many(self, deliveries: list[Delivery]) -> None:
        """Writes the state of each (identity, key and creation never change)."""
        if not deliveries:
            return
        stmt = (
            sa.update(t)
            .where(t.c.id == sa.bindparam("b_id"))
            .values({name: sa.bindparam(f"b_{name}") for name in MUTABLE_FIELDS})
        )
        self._conn.execute(stmt, [{f"b_{k}": v for k, v in _to_row(d).items()} for d in deliveries])

    def add_attempts_many(self, entries: list[tuple[Delivery, Attempt]]) -> None:
        """Each (delivery, attempt) in one executemany."""
        if entries:
            self._conn.execute(
                sa.insert(a),
                [
                    {
                        "delivery_id": d.id,
                        "tenant_id": d.tenant_id,
                        "number": x.number,
                        "started_at": x.started_at,
                        "duration_ms": x.duration_ms,
                        "outcome": x.outcome.value,
                        "http_status": x.http_status,
                        "error": x.error or None,
                    }
                    for d, x in entries
                ],
            )

    def for_exception(self, tenant_id: str, exception_id: str) -> list[Delivery]:
        eid = canonical_uuid(exception_id)
        if eid is None:
            return []
        stmt = (
            sa.select(t)
            .where(t.c.tenant_id == tenant_id, t.c.exception_id == eid)
            .order_by(t.c.created_at, t.c.id)
        )
        rows = list(self._conn.execute(stmt))
        attempts = self._attempts([r.id for r in rows])
        return [_from_row(r, attempts.get(r.id, ())) for r in rows]

    def for_exceptions(self, tenant_id: str, exception_ids: Iterable[str]) -> list[Delivery]:
        ids = canonical_uuids(exception_ids)
        if not ids:
            return []
        stmt = (
            sa.select(t)
            .where(t.c.tenant_id == tenant_id, t.c.exception_id.in_(ids))
            .order_by(t.c.created_at, t.c.id)
        )
        return [_from_row(r, ()) for r in self._conn.execute(stmt)]

    def page(
        self,
        tenant_id: str,
        *,
        state: DeliveryState | None,
        target: TargetSystem | None,
        after: PageAfter | None,
        limit: int,
    ) -> list[Delivery]:
        """Newest first, up to limit + 1 (with attempts)."""
        stmt = sa.select(t).where(t.c.tenant_id == tenant_id)
        if state is not None:
            stmt = stmt.where(t.c.state == state.value)
        if target is not None:
            stmt = stmt.where(t.c.target_system == target.value)
        if after is not None:
            stmt = stmt.where(keyset_after(t.c.created_at, t.c.id, "created_at", after, descending=True))
        stmt = stmt.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
        rows = list(self._conn.execute(stmt))
        attempts = self._attempts([r.id for r in rows])
        return [_from_row(r, attempts.get(r.id, ())) for r in rows]

    def _attempts(self, ids: list[str]) -> dict[str, tuple[Attempt, ...]]:
        if not ids:
            return {}
        stmt = sa.select(a).where(a.c.delivery_id.in_(ids)).order_by(a.c.delivery_id, a.c.number)
        found: dict[str, list[Attempt]] = {}
        for r in self._conn.execute(stmt):
            found.setdefault(r.delivery_id, []).append(_attempt_from_row(r))
        return {k: tuple(v) for k, v in found.items()}

    # -- the worker side ---------------------------------------------------------------------------

    def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        accept: Callable[[Delivery], bool],
    ) -> list[Delivery]:
        """Takes up to `limit` due deliveries that `accept` takes (the worker's bulkheads), leased to
        `owner` until lease_until, each with one more attempt counted. A delivery whose previous
        lease expired gets that lost attempt logged and is marked outcome_unknown."""
        # Two statements, each one index range in due order (ix_deliveries_due, ix_deliveries_leases):
        # an OR of the two made SQLite read and sort every due row on every claim.
        rows = [*self._candidates(_due_pending(now), t.c.next_attempt_at, limit)]
        rows += self._candidates(_lease_expired(now), t.c.lease_expires_at, limit)
        chosen: list[Delivery] = []
        lost: list[Delivery] = []
        for row in rows:
            candidate = _from_row(row)
            if len(chosen) >= limit or not accept(candidate):
                continue
            if candidate.state is DeliveryState.IN_FLIGHT:
                lost.append(candidate)
            chosen.append(candidate)
        self.add_attempts_many(
            [
                (
                    stale,
                    Attempt(
                        stale.attempt_count,
                        stale.updated_at,
                        int(max(0.0, (now - stale.updated_at).total_seconds()) * 1000),
                        AttemptOutcome.TIMEOUT,
                        None,
                        LOST_ATTEMPT,
                    ),
                )
                for stale in lost
            ]
        )
        claimed = [
            _claimed(d, owner, now, lease_until, lost=d.state is DeliveryState.IN_FLIGHT) for d in chosen
        ]
        self.update_many(claimed)
        return claimed

    def _candidates(
        self, due: sa.ColumnElement[bool], order: sa.ColumnElement[Any], limit: int
    ) -> list[Row[Any]]:
        """Due rows of targets that are not paused, in due order; locked (skipping rows another
        claimer holds) on PostgreSQL. Twice the limit, so the bulkheads have some choice."""
        stmt = sa.select(t).where(due, ~_paused()).order_by(order).limit(limit * 2)
        if self._conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=t, skip_locked=True)
        return list(self._conn.execute(stmt))

    def finish(self, owner: str, delivery: Delivery, attempt: Attempt) -> bool:
        """Writes an attempt's outcome if `owner` still holds the lease; False when it lost it (the
        lease expired and another worker took the delivery over: its outcome stands)."""
        values = {k: v for k, v in _to_row(delivery).items() if k in MUTABLE_FIELDS}
        result = self._conn.execute(
            sa.update(t)
            .where(
                t.c.id == delivery.id,
                t.c.lease_owner == owner,
                t.c.state == DeliveryState.IN_FLIGHT.value,
            )
            .values(values)
        )
        if result.rowcount != 1:
            return False
        self.add_attempts_many([(delivery, attempt)])
        return True

    def any_due(self, now: datetime) -> bool:
        """Whether claim_due could find anything: two indexed probes, no lock."""
        for due in (_due_pending(now), _lease_expired(now)):
            if self._conn.execute(sa.select(t.c.id).where(due, ~_paused()).limit(1)).first() is not None:
                return True
        return False

    def counts_by_state(self) -> dict[str, int]:
        stmt = sa.select(t.c.state, sa.func.count()).group_by(t.c.state)
        return {state: count for state, count in self._conn.execute(stmt)}

    def oldest_due(self, now: datetime) -> datetime | None:
        stmt = sa.select(sa.func.min(t.c.next_attempt_at)).where(
            t.c.state == DeliveryState.PENDING.value, t.c.next_attempt_at <= now
        )
        return self._conn.execute(stmt).scalar()


def _due_pending(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.state == DeliveryState.PENDING.value, t.c.next_attempt_at <= now)


def _lease_expired(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.state == DeliveryState.IN_FLIGHT.value, t.c.lease_expires_at < now)


def _paused() -> sa.Exists:
    """The delivery's target is paused (correlated: one primary-key probe of targets per row)."""
    return (
        sa.select(targets.c.tenant_id)
        .where(
            targets.c.tenant_id == t.c.tenant_id,
            targets.c.target_system == t.c.target_system,
            targets.c.paused.is_(True),
        )
        .exists()
    )


def _claimed(d: Delivery, owner: str, now: datetime, lease_until: datetime, *, lost: bool) -> Delivery:
    return replace(
        d,
        state=DeliveryState.IN_FLIGHT,
        attempt_count=d.attempt_count + 1,
        lease_owner=owner,
        lease_expires_at=lease_until,
        updated_at=now,
        outcome_unknown=d.outcome_unknown or lost,
    )


if TYPE_CHECKING:

    def _conforms(repository: SqlDeliveryRepository) -> DeliveryRepository:
        return repository
