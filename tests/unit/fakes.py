"""In-memory fakes of the ports the services use, for fast unit tests of the services' rules.

Each fake follows its SQL adapter where a service can observe the difference (server/storage/):
tenant isolation, canonical uuids, what comes back from a write (UTC times, 4-place amounts,
upper-case external_system, `changes` as JSON), keyset paging, upserts, the delivery claims and
leases, and transactions (a unit of work commits on a normal exit and discards its writes otherwise; joined
ones share the outer one; a nested `outer()` is a savepoint). tests/unit/test_fakes_match_sql.py
runs the same operations on both and compares the answers.

Deliberately not modelled:
- concurrency: no row locks; one writer at a time, like SQLite. A second independent write unit of
  work while one holds the write lock raises RuntimeError (on SQLite it would wait for a lock its
  own thread holds);
- column lengths and database errors; constraint violations raise ConstraintViolation, not
  SQLAlchemy's IntegrityError;
- writes through a unit of work opened with write=False raise RuntimeError (stricter than SQL);
- the idempotency key purge and the SQL factory's extras (current(), keep_read_connection()).
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Self, overload

from server.connectors.manual import ManualConnector
from server.domain.delivery import Attempt, AttemptOutcome, Delivery, DeliveryState
from server.domain.dispatch import (
    Connector,
    ResolutionRequest,
    TargetDown,
    TargetSystem,
    TicketRef,
    TicketRequest,
)
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.history import Action, HistoryEntry
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
from server.domain.paging import ExceptionQuery, PageAfter, parse_sort_value
from server.domain.routing import (
    RoutingRule,
    action_from_json,
    action_to_json,
    conditions_from_json,
    conditions_to_json,
)
from server.domain.sla import SlaPolicy
from server.domain.targets import StoredTarget, TargetConfig
from server.storage.repositories.deliveries import LOST_ATTEMPT, MUTABLE_FIELDS


class ConstraintViolation(Exception):
    """A primary key, unique or foreign key constraint the database would enforce."""


# -- stored values, as the SQL adapters return them ---------------------------------------------------


def _uuid(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _uuid_or_fail(value: object) -> str:
    canonical = _uuid(value)
    if canonical is None:
        raise ConstraintViolation(f"{value!r} is not a uuid")
    return canonical


@overload
def _utc(value: datetime) -> datetime: ...


@overload
def _utc(value: datetime | None) -> datetime | None: ...


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(value: Any) -> Any:
    """A JSON column's round trip (storage/engine.py: decimals and times as the API prints them)."""

    def default(v: Any) -> Any:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat(timespec="microseconds")
        raise TypeError(f"{type(v).__name__} is not JSON serializable")

    return json.loads(json.dumps(value, default=default))


def _exception_row(e: ReconException) -> ReconException:
    return replace(
        e,
        id=_uuid_or_fail(e.id),
        severity=Severity(e.severity),
        status=Status(e.status),
        amount=None if e.amount is None else Decimal(e.amount).quantize(Decimal("0.0001")),
        external_system=e.external_system.upper() if e.external_system is not None else None,
        created_at=_utc(e.created_at),
        updated_at=_utc(e.updated_at),
        occurred_at=_utc(e.occurred_at),
        due_at=_utc(e.due_at),
        metadata=_json(dict(e.metadata)),
        escalated_at=_utc(e.escalated_at),
    )


def _copy_exception(e: ReconException) -> ReconException:
    return replace(e, metadata=dict(e.metadata))  # callers get their own dict, as from a fresh read


@dataclass(frozen=True)
class StoredToken:
    """A token row; satisfies server.domain.ports.TokenRecord. Holds the hash, never the token."""

    id: str
    tenant_id: str
    name: str
    scopes: frozenset[str]
    revoked_at: datetime | None
    token_hash: str
    created_at: datetime


@dataclass
class Tables:
    exceptions: dict[str, ReconException] = field(default_factory=dict)  # by id
    history: dict[str, HistoryEntry] = field(default_factory=dict)  # by id
    deliveries: dict[str, Delivery] = field(default_factory=dict)  # by id, without attempts
    delivery_attempts: dict[tuple[str, int], Attempt] = field(default_factory=dict)  # (delivery, number)
    targets: dict[tuple[str, TargetSystem], StoredTarget] = field(default_factory=dict)
    inbound_events: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    tokens: dict[str, StoredToken] = field(default_factory=dict)  # by id
    routing_rules: dict[str, RoutingRule] = field(default_factory=dict)  # by id
    routing_generations: dict[str, int] = field(default_factory=dict)  # by tenant
    sla_policies: dict[str, SlaPolicy] = field(default_factory=dict)  # by tenant
    idempotency_keys: dict[KeyScope, KeyRecord] = field(default_factory=dict)

    def copy(self) -> Tables:
        # Rows are frozen values copied on the way in and out, so copying the dicts is enough.
        return Tables(**{f.name: dict(getattr(self, f.name)) for f in fields(self)})


# -- units of work ------------------------------------------------------------------------------------


class FakeDatabase:
    """The committed rows, shared by every unit of work of a factory."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.writer: FakeUnitOfWork | None = None  # who holds the write lock (SQLite: one writer)
        self.commits = 0


class FakeUnitOfWork:
    """Like SqlUnitOfWork: a write unit of work begins at __enter__, an outer() one at its first
    statement, a read of its own has no transaction (each read sees the latest commit), a joined one
    uses its outer's transaction and neither commits nor discards, a savepoint (nested outer())
    hands its rows to its parent on a normal exit."""

    def __init__(
        self,
        db: FakeDatabase,
        *,
        write: bool,
        parent: FakeUnitOfWork | None = None,
        savepoint: bool = False,
        lazy: bool = False,
    ) -> None:
        self._db = db
        self.write = write
        self._parent = parent
        self._savepoint = savepoint
        self._lazy = lazy
        self._rows: Tables | None = None  # this transaction's view, once begun
        self._thread = threading.get_ident()
        self.exceptions = FakeExceptionRepository(self)
        self.history = FakeHistoryRepository(self)
        self.deliveries = FakeDeliveryRepository(self)
        self.targets = FakeTargetRepository(self)
        self.tokens = FakeTokenRepository(self)
        self.routing = FakeRoutingRuleRepository(self)
        self.sla = FakeSlaPolicyRepository(self)

    @property
    def begun(self) -> bool:
        if self._parent is not None and not self._savepoint:
            return self._parent.begun
        return self._rows is not None

    def rows(self) -> Tables:
        """The rows a statement of this unit of work sees (begins a lazy transaction)."""
        if self._parent is not None and not self._savepoint:
            return self._parent.rows()
        if self._rows is None:
            if not self.write and not self._lazy and not self._savepoint:
                return self._db.tables  # a read of its own: no transaction
            self._begin()
        assert self._rows is not None
        return self._rows

    def rows_for_write(self) -> Tables:
        if not self.write:
            raise RuntimeError("a write through a read-only unit of work")
        return self.rows()

    def _begin(self) -> None:
        if self.write:
            if self._db.writer is not None and self._db.writer is not self:
                raise RuntimeError("another unit of work holds the write lock (SQLite would wait forever)")
            self._db.writer = self
        self._rows = self._db.tables.copy()

    def __enter__(self) -> Self:
        if self._savepoint:
            assert self._parent is not None
            self._rows = self._parent.rows().copy()
        elif self._parent is None and self.write and not self._lazy:
            self._begin()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._savepoint:
            assert self._parent is not None and self._rows is not None
            if exc_type is None:
                self._parent._rows = self._rows  # RELEASE SAVEPOINT; otherwise ROLLBACK TO it
            self._rows = None
            return
        if self._parent is not None:
            return  # joined: the outer unit of work decides
        try:
            if exc_type is None and self.write and self._rows is not None:
                self._db.tables = self._rows
                self._db.commits += 1
        finally:
            if self._db.writer is self:
                self._db.writer = None
            self._rows = None


def _check_joinable(outer: FakeUnitOfWork, write: bool) -> None:
    if outer._thread != threading.get_ident():
        raise RuntimeError("a unit of work cannot join an outer one opened by another thread")
    if write and not outer.write:
        raise RuntimeError("a write unit of work cannot join a read-only outer one")


class FakeUnitOfWorkFactory:
    """Implements server.domain.ports.UnitOfWorkFactory, plus outer() like SqlUnitOfWorkFactory."""

    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db or FakeDatabase()
        self._current: ContextVar[FakeUnitOfWork | None] = ContextVar(f"fake_uow_{id(self)}", default=None)

    def __call__(self, *, write: bool, join: bool = True) -> FakeUnitOfWork:
        outer = self._current.get() if join else None
        if outer is None:
            return FakeUnitOfWork(self.db, write=write)
        _check_joinable(outer, write)
        return FakeUnitOfWork(self.db, write=write, parent=outer)

    def in_transaction(self) -> bool:
        outer = self._current.get()
        return outer is not None and outer.begun

    @contextmanager
    def outer(self, *, write: bool = True) -> Iterator[FakeUnitOfWork]:
        parent = self._current.get()
        if parent is None:
            uow = FakeUnitOfWork(self.db, write=write, lazy=True)
        else:
            _check_joinable(parent, write)
            uow = FakeUnitOfWork(self.db, write=write, parent=parent, savepoint=True)
        with uow:
            token = self._current.set(uow)
            try:
                yield uow
            finally:
                self._current.reset(token)

    @property
    def rows(self) -> Tables:
        """The committed rows, for assertions."""
        return self.db.tables


# -- repositories -------------------------------------------------------------------------------------


class _Repository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    def _read(self) -> Tables:
        return self._uow.rows()

    def _write(self) -> Tables:
        return self._uow.rows_for_write()


def _keyset(sort_by: str, after: PageAfter) -> tuple[Any, ...]:
    """The cursor row's sort key, validated like storage/repositories/_common.keyset_after."""
    row_id = _uuid(after.id)
    if row_id is None:
        raise InvalidArgument.field("cursor", "is not a cursor of this query")
    if sort_by == "id":
        return (row_id,)
    return (parse_sort_value(after.value, sort_by), row_id)


class FakeExceptionRepository(_Repository):
    def add_many(self, items: list[ReconException]) -> None:
        if not items:
            return
        rows = self._write().exceptions
        new = [_exception_row(e) for e in items]
        ids = [e.id for e in new]
        if len(set(ids)) != len(ids) or any(i in rows for i in ids):
            raise ConstraintViolation("exceptions: duplicate id")
        rows.update((e.id, e) for e in new)

    # Like SQL, calls that need no statement (no valid id) do not touch the transaction.

    def get(self, tenant_id: str, exception_id: str) -> ReconException | None:
        wanted = _uuid(exception_id)
        if wanted is None:
            return None
        row = self._read().exceptions.get(wanted)
        return _copy_exception(row) if row is not None and row.tenant_id == tenant_id else None

    def get_many(self, tenant_id: str, ids: Iterable[str]) -> dict[str, ReconException]:
        wanted = {u for u in map(_uuid, ids) if u is not None}
        if not wanted:
            return {}
        rows = self._read().exceptions
        mine = [i for i in sorted(wanted) if i in rows and rows[i].tenant_id == tenant_id]
        return {i: _copy_exception(rows[i]) for i in mine}

    def find_by_ticket(self, tenant_id: str, system: str, reference: str) -> list[ReconException]:
        rows = self._read().exceptions.values()
        found = [
            e
            for e in rows
            if e.tenant_id == tenant_id and e.external_system == system and e.external_issue_id == reference
        ]
        return [_copy_exception(e) for e in sorted(found, key=lambda e: e.id)]

    def update_many(self, items: list[ReconException]) -> None:
        if not items:
            return
        rows = self._write().exceptions
        for e in items:
            new = _exception_row(e)
            old = rows.get(new.id)
            if old is not None and old.tenant_id == new.tenant_id:  # WHERE id = ? AND tenant_id = ?
                rows[new.id] = replace(new, created_at=old.created_at)  # identity and creation stay

    def list(self, tenant_id: str, query: ExceptionQuery) -> list[ReconException]:
        f = query.filter

        def wanted(e: ReconException) -> bool:
            return (
                e.tenant_id == tenant_id
                and (f.status is None or e.status == f.status)
                and (f.severity is None or e.severity == f.severity)
                and (f.assigned_to is None or e.assigned_to == f.assigned_to)
                and (f.external_system is None or e.external_system == f.external_system.strip().upper())
                and (f.date_from is None or e.created_at >= f.date_from)
                and (f.date_to is None or e.created_at < f.date_to)
                and (
                    not f.overdue
                    or (
                        e.status is not Status.RESOLVED
                        and e.due_at is not None
                        and query.now is not None
                        and e.due_at < query.now
                    )
                )
                and (query.sort_by != "due_at" or e.due_at is not None)
            )

        def key(e: ReconException) -> tuple[Any, ...]:
            return (e.id,) if query.sort_by == "id" else (getattr(e, query.sort_by), e.id)

        rows = [e for e in self._read().exceptions.values() if wanted(e)]
        if query.after is not None:
            bound = _keyset(query.sort_by, query.after)
            rows = [e for e in rows if (key(e) < bound if query.descending else key(e) > bound)]
        rows.sort(key=key, reverse=query.descending)
        return [_copy_exception(e) for e in rows[: query.limit + 1]]

    def overdue_unescalated(self, tenant_id: str, now: datetime, limit: int) -> list[ReconException]:
        return _overdue_unescalated(self._read().exceptions, tenant_id, now, limit)

    def count_overdue_unescalated(self, tenant_id: str, now: datetime, cap: int) -> int:
        return len(_overdue_unescalated(self._read().exceptions, tenant_id, now, cap))


def _overdue_unescalated(
    rows: dict[str, ReconException], tenant_id: str, now: datetime, limit: int
) -> list[ReconException]:
    found = [
        e
        for e in rows.values()
        if e.tenant_id == tenant_id
        and e.status is not Status.RESOLVED
        and e.escalated_at is None
        and e.due_at is not None
        and e.due_at < now
    ]
    found.sort(key=lambda e: (e.due_at, e.id))
    return [_copy_exception(e) for e in found[:limit]]


class FakeHistoryRepository(_Repository):
    def add_many(self, entries: list[HistoryEntry]) -> None:
        if not entries:
            return
        tables = self._write()
        new = [
            replace(
                h,
                id=_uuid_or_fail(h.id),
                exception_id=_uuid_or_fail(h.exception_id),
                action=Action(h.action),
                created_at=_utc(h.created_at),
                changes=_json(h.changes),
            )
            for h in entries
        ]
        ids = [h.id for h in new]
        if len(set(ids)) != len(ids) or any(i in tables.history for i in ids):
            raise ConstraintViolation("exception_history: duplicate id")
        if any(h.exception_id not in tables.exceptions for h in new):
            raise ConstraintViolation("exception_history: no such exception")
        tables.history.update((h.id, h) for h in new)

    def list(
        self, tenant_id: str, exception_id: str, after: PageAfter | None, limit: int
    ) -> list[HistoryEntry]:
        wanted = _uuid(exception_id)
        if wanted is None:
            return []
        rows = [
            h for h in self._read().history.values() if h.tenant_id == tenant_id and h.exception_id == wanted
        ]
        if after is not None:
            bound = _keyset("created_at", after)
            rows = [h for h in rows if (h.created_at, h.id) > bound]
        rows.sort(key=lambda h: (h.created_at, h.id))
        return [replace(h, changes=_json(h.changes)) for h in rows[: limit + 1]]


def _delivery_row(d: Delivery) -> Delivery:
    """A delivery as the deliveries table holds it (its attempts live in delivery_attempts)."""
    return replace(
        d,
        id=_uuid_or_fail(d.id),
        exception_id=_uuid_or_fail(d.exception_id),
        target_system=TargetSystem(d.target_system),
        state=DeliveryState(d.state),
        created_at=_utc(d.created_at),
        updated_at=_utc(d.updated_at),
        next_attempt_at=_utc(d.next_attempt_at),
        horizon_at=_utc(d.horizon_at),
        delivered_at=_utc(d.delivered_at),
        lease_expires_at=_utc(d.lease_expires_at),
        attempts=(),
    )


# What update_many and finish write: the SQL adapter's own list.
_DELIVERY_MUTABLE = MUTABLE_FIELDS


def _delivery_changes(old: Delivery, new: Delivery) -> Delivery:
    row = _delivery_row(new)
    return replace(old, **{name: getattr(row, name) for name in _DELIVERY_MUTABLE})


class FakeDeliveryRepository(_Repository):
    """Like SqlDeliveryRepository: unique (tenant, key), claims of due PENDING rows and of IN_FLIGHT
    rows whose lease expired (that lost attempt logged), never of a paused target's; a lease-checked
    finish. No row locks (one writer at a time), so claims are disjoint as on SQLite."""

    def _with_attempts(self, tables: Tables, d: Delivery) -> Delivery:
        attempts = sorted(
            (a for (did, _), a in tables.delivery_attempts.items() if did == d.id), key=lambda a: a.number
        )
        return replace(d, attempts=tuple(attempts))

    def get_by_keys(self, tenant_id: str, keys: Iterable[str]) -> dict[str, Delivery]:
        wanted = set(keys)
        if not wanted:
            return {}
        rows = self._read().deliveries.values()
        return {d.key: d for d in rows if d.tenant_id == tenant_id and d.key in wanted}

    def get_many(
        self, tenant_id: str, ids: Iterable[str], *, with_attempts: bool = False
    ) -> dict[str, Delivery]:
        wanted = {u for u in map(_uuid, ids) if u is not None}
        if not wanted:
            return {}
        tables = self._read()
        found = {
            i: tables.deliveries[i]
            for i in sorted(wanted)
            if i in tables.deliveries and tables.deliveries[i].tenant_id == tenant_id
        }
        if with_attempts:
            return {i: self._with_attempts(tables, d) for i, d in found.items()}
        return found

    def get(self, tenant_id: str, delivery_id: str) -> Delivery | None:
        return self.get_many(tenant_id, [delivery_id], with_attempts=True).get(_uuid(delivery_id) or "")

    def add_many(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        tables = self._write()
        new = [_delivery_row(d) for d in deliveries]
        ids = [d.id for d in new]
        keys = [(d.tenant_id, d.key) for d in new]
        taken = {(d.tenant_id, d.key) for d in tables.deliveries.values()}
        if len(set(ids)) != len(ids) or any(i in tables.deliveries for i in ids):
            raise ConstraintViolation("deliveries: duplicate id")
        if len(set(keys)) != len(keys) or any(k in taken for k in keys):
            raise ConstraintViolation("deliveries: duplicate (tenant_id, key)")
        if any(d.exception_id not in tables.exceptions for d in new):
            raise ConstraintViolation("deliveries: no such exception")
        tables.deliveries.update((d.id, d) for d in new)

    def update_many(self, deliveries: list[Delivery]) -> None:
        """WHERE id = ?: identity, key and creation stay those of the first write."""
        if not deliveries:
            return
        rows = self._write().deliveries
        for d in deliveries:
            old = rows.get(_uuid_or_fail(d.id))
            if old is not None:
                rows[old.id] = _delivery_changes(old, d)

    def add_attempts_many(self, entries: list[tuple[Delivery, Attempt]]) -> None:
        if not entries:
            return
        tables = self._write()
        new = [
            (
                (_uuid_or_fail(d.id), a.number),
                replace(a, outcome=AttemptOutcome(a.outcome), started_at=_utc(a.started_at)),
            )
            for d, a in entries
        ]
        pks = [pk for pk, _ in new]
        if len(set(pks)) != len(pks) or any(pk in tables.delivery_attempts for pk in pks):
            raise ConstraintViolation("delivery_attempts: duplicate (delivery_id, number)")
        if any(did not in tables.deliveries for did, _ in pks):
            raise ConstraintViolation("delivery_attempts: no such delivery")
        tables.delivery_attempts.update(new)

    def for_exceptions(self, tenant_id: str, exception_ids: Iterable[str]) -> list[Delivery]:
        wanted = {u for u in map(_uuid, exception_ids) if u is not None}
        if not wanted:
            return []
        rows = [
            d
            for d in self._read().deliveries.values()
            if d.tenant_id == tenant_id and d.exception_id in wanted
        ]
        return sorted(rows, key=lambda d: (d.created_at, d.id))

    def for_exception(self, tenant_id: str, exception_id: str) -> list[Delivery]:
        eid = _uuid(exception_id)
        if eid is None:
            return []
        tables = self._read()
        rows = [d for d in tables.deliveries.values() if d.tenant_id == tenant_id and d.exception_id == eid]
        rows.sort(key=lambda d: (d.created_at, d.id))
        return [self._with_attempts(tables, d) for d in rows]

    def page(
        self,
        tenant_id: str,
        *,
        state: DeliveryState | None,
        target: TargetSystem | None,
        after: PageAfter | None,
        limit: int,
    ) -> list[Delivery]:
        tables = self._read()
        rows = [
            d
            for d in tables.deliveries.values()
            if d.tenant_id == tenant_id
            and (state is None or d.state == state)
            and (target is None or d.target_system == target)
        ]
        if after is not None:
            bound = _keyset("created_at", after)
            rows = [d for d in rows if (d.created_at, d.id) < bound]
        rows.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [self._with_attempts(tables, d) for d in rows[: limit + 1]]

    def claim_due(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        accept: Callable[[Delivery], bool],
    ) -> list[Delivery]:
        tables = self._write()
        now_utc = _utc(now)
        paused = {key for key, t in tables.targets.items() if t.paused}

        live = [d for d in tables.deliveries.values() if (d.tenant_id, d.target_system) not in paused]
        # Like the SQL adapter: due PENDING rows by next_attempt_at, then expired leases by
        # lease_expires_at, each up to twice the limit (two statements, each in index order).
        pending = sorted(
            (
                d
                for d in live
                if d.state is DeliveryState.PENDING
                and d.next_attempt_at is not None
                and d.next_attempt_at <= now_utc
            ),
            key=lambda d: (d.next_attempt_at, d.id),
        )[: limit * 2]
        expired = sorted(
            (
                d
                for d in live
                if d.state is DeliveryState.IN_FLIGHT
                and d.lease_expires_at is not None
                and d.lease_expires_at < now_utc
            ),
            key=lambda d: (d.lease_expires_at, d.id),
        )[: limit * 2]
        candidates = [*pending, *expired]
        chosen: list[Delivery] = []
        for candidate in candidates:
            if len(chosen) >= limit or not accept(candidate):
                continue
            chosen.append(candidate)
        lost = [d for d in chosen if d.state is DeliveryState.IN_FLIGHT]
        self.add_attempts_many(
            [
                (
                    d,
                    Attempt(
                        d.attempt_count,
                        d.updated_at,
                        int(max(0.0, (now_utc - d.updated_at).total_seconds()) * 1000),
                        AttemptOutcome.TIMEOUT,
                        None,
                        LOST_ATTEMPT,
                    ),
                )
                for d in lost
            ]
        )
        claimed = [
            replace(
                d,
                state=DeliveryState.IN_FLIGHT,
                attempt_count=d.attempt_count + 1,
                lease_owner=owner,
                lease_expires_at=lease_until,
                updated_at=now,
                outcome_unknown=d.outcome_unknown or d.state is DeliveryState.IN_FLIGHT,
            )
            for d in chosen
        ]
        self.update_many(claimed)
        return claimed

    def finish(self, owner: str, delivery: Delivery, attempt: Attempt) -> bool:
        """WHERE id = ? AND lease_owner = owner AND state = 'IN_FLIGHT'."""
        rows = self._write().deliveries
        old = rows.get(_uuid_or_fail(delivery.id))
        if old is None or old.lease_owner != owner or old.state is not DeliveryState.IN_FLIGHT:
            return False
        rows[old.id] = _delivery_changes(old, delivery)
        self.add_attempts_many([(delivery, attempt)])
        return True

    def any_due(self, now: datetime) -> bool:
        """Like claim_due's condition: deliveries of paused targets are never due."""
        now_utc = _utc(now)
        tables = self._read()
        paused = {key for key, t in tables.targets.items() if t.paused}
        return any(
            (d.tenant_id, d.target_system) not in paused
            and (
                (
                    d.state is DeliveryState.PENDING
                    and d.next_attempt_at is not None
                    and d.next_attempt_at <= now_utc
                )
                or (
                    d.state is DeliveryState.IN_FLIGHT
                    and d.lease_expires_at is not None
                    and d.lease_expires_at < now_utc
                )
            )
            for d in tables.deliveries.values()
        )

    def counts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self._read().deliveries.values():
            counts[d.state.value] = counts.get(d.state.value, 0) + 1
        return counts

    def oldest_due(self, now: datetime) -> datetime | None:
        due = [
            d.next_attempt_at
            for d in self._read().deliveries.values()
            if d.state is DeliveryState.PENDING and d.next_attempt_at is not None and d.next_attempt_at <= now
        ]
        return min(due, default=None)


def _copy_target(t: StoredTarget) -> StoredTarget:
    return replace(t, settings=dict(t.settings))


class FakeTargetRepository(_Repository):
    def get(self, tenant_id: str, target: TargetSystem) -> StoredTarget | None:
        row = self._read().targets.get((tenant_id, target))
        return _copy_target(row) if row is not None else None

    def list(self, tenant_id: str) -> list[StoredTarget]:
        rows = [t for (tenant, _), t in self._read().targets.items() if tenant == tenant_id]
        return [_copy_target(t) for t in sorted(rows, key=lambda t: t.target.value)]

    def put(self, stored: StoredTarget) -> None:
        """An upsert: an existing row keeps its created_at."""
        rows = self._write().targets
        key = (stored.tenant_id, TargetSystem(stored.target))
        old = rows.get(key)
        row = replace(
            stored,
            target=TargetSystem(stored.target),
            settings=_json(dict(stored.settings)),
            created_at=_utc(stored.created_at),
            updated_at=_utc(stored.updated_at),
        )
        # A new row is not paused (the column's default); an existing one keeps created_at and paused.
        if old is None:
            rows[key] = replace(row, paused=False)
        else:
            rows[key] = replace(row, created_at=old.created_at, paused=old.paused)

    def set_paused(self, tenant_id: str, target: TargetSystem, paused: bool) -> bool:
        """False when the target is not configured."""
        rows = self._write().targets
        old = rows.get((tenant_id, target))
        if old is None:
            return False
        rows[(tenant_id, target)] = replace(old, paused=paused)
        return True

    def delete(self, tenant_id: str, target: TargetSystem) -> bool:
        return self._write().targets.pop((tenant_id, target), None) is not None

    def by_hook_id(self, hook_id: str) -> StoredTarget | None:
        found = [t for t in self._read().targets.values() if t.inbound_hook_id == hook_id]
        return _copy_target(found[0]) if found else None

    def record_inbound_event(
        self, tenant_id: str, target: TargetSystem, event_id: str, now: datetime
    ) -> bool:
        rows = self._write().inbound_events
        key = (tenant_id, target.value, event_id)
        added = key not in rows
        rows.setdefault(key, _utc(now))
        for old in [k for k, at in rows.items() if k[:2] == key[:2] and at < _utc(now) - timedelta(days=7)]:
            del rows[old]
        return added


def _rule_row(rule: RoutingRule) -> RoutingRule:
    """As the SQL adapter stores it: through the JSON documents, times in UTC."""
    return replace(
        rule,
        conditions=conditions_from_json(_json(conditions_to_json(rule.conditions))),
        action=action_from_json(_json(action_to_json(rule.action))),
        created_at=_utc(rule.created_at),
        updated_at=_utc(rule.updated_at),
    )


class FakeRoutingRuleRepository(_Repository):
    def list(self, tenant_id: str) -> list[RoutingRule]:
        rows = [r for r in self._read().routing_rules.values() if r.tenant_id == tenant_id]
        return sorted(rows, key=lambda r: (r.priority, r.id))

    def get(self, tenant_id: str, rule_id: str) -> RoutingRule | None:
        row = self._read().routing_rules.get(_uuid_or_fail(rule_id))
        return row if row is not None and row.tenant_id == tenant_id else None

    def add(self, rule: RoutingRule) -> None:
        rows = self._write().routing_rules
        rule_id = _uuid_or_fail(rule.id)
        if rule_id in rows or any(
            r.tenant_id == rule.tenant_id and r.priority == rule.priority for r in rows.values()
        ):
            raise ConstraintViolation("routing_rules: duplicate id or (tenant_id, priority)")
        rows[rule_id] = _rule_row(replace(rule, id=rule_id))

    def replace(self, rule: RoutingRule) -> bool:
        rows = self._write().routing_rules
        old = rows.get(_uuid_or_fail(rule.id))
        if old is None or old.tenant_id != rule.tenant_id:
            return False
        if any(
            r.tenant_id == rule.tenant_id and r.priority == rule.priority and r.id != old.id
            for r in rows.values()
        ):
            raise ConstraintViolation("routing_rules: duplicate (tenant_id, priority)")
        rows[old.id] = _rule_row(replace(rule, id=old.id, created_at=old.created_at))
        return True

    def delete(self, tenant_id: str, rule_id: str) -> bool:
        rows = self._write().routing_rules
        old = rows.get(_uuid_or_fail(rule_id))
        if old is None or old.tenant_id != tenant_id:
            return False
        del rows[old.id]
        return True

    def generation(self, tenant_id: str) -> int:
        return self._read().routing_generations.get(tenant_id, 0)

    def bump_generation(self, tenant_id: str) -> None:
        rows = self._write().routing_generations
        rows[tenant_id] = rows.get(tenant_id, 0) + 1


class FakeSlaPolicyRepository(_Repository):
    def get(self, tenant_id: str) -> SlaPolicy | None:
        return self._read().sla_policies.get(tenant_id)

    def put(self, policy: SlaPolicy) -> None:
        stored = replace(policy, tiers=dict(policy.tiers), updated_at=_utc(policy.updated_at))
        self._write().sla_policies[policy.tenant_id] = stored

    def with_escalation(self) -> list[SlaPolicy]:
        rows = self._read().sla_policies
        return [rows[t] for t in sorted(rows) if rows[t].escalation_target is not None]


class FakeTokenRepository(_Repository):
    def add(self, token_id: str, tenant_id: str, name: str, scopes: frozenset[str], token_hash: str) -> None:
        rows = self._write().tokens
        if token_id in rows or any(t.token_hash == token_hash for t in rows.values()):
            raise ConstraintViolation("tokens: duplicate id or token_hash")
        stored_scopes = frozenset(s for s in ",".join(sorted(scopes)).split(",") if s)  # a text column
        rows[token_id] = StoredToken(
            token_id, tenant_id, name, stored_scopes, None, token_hash, datetime.now(UTC)
        )

    def find_by_hash(self, token_hash: str) -> StoredToken | None:
        return next((t for t in self._read().tokens.values() if t.token_hash == token_hash), None)

    def revoke(self, token_id: str, now: datetime) -> bool:
        """False when there is no such token or it is already revoked."""
        rows = self._write().tokens
        row = rows.get(token_id)
        if row is None or row.revoked_at is not None:
            return False
        rows[token_id] = replace(row, revoked_at=_utc(now))
        return True

    def count(self) -> int:
        return len(self._read().tokens)


# -- other ports --------------------------------------------------------------------------------------


class FakeKeyStore:
    """server.domain.idempotency.KeyStore over the fake database, like SqlIdempotencyStore: the claim
    commits on its own (joined to an open outer transaction, as there), the response is written
    into the call's transaction, takeovers/completion/release compare the claim's locked_at."""

    def __init__(self, uow: FakeUnitOfWorkFactory, policy: Policy) -> None:
        self._uow = uow
        self.policy = policy

    def find(self, scope: KeyScope) -> KeyRecord | None:
        with self._uow(write=False) as u:
            return u.rows().idempotency_keys.get(scope)

    def claim(self, scope: KeyScope, fingerprint: str, now: datetime) -> Claim | StoredResponse:
        with self._uow(write=True) as u:
            keys = u.rows_for_write().idempotency_keys
            existing = keys.get(scope)
            if existing is not None and decide(existing, fingerprint, now, self.policy) is Decision.REPLAY:
                assert existing.response is not None and existing.response_type is not None
                return StoredResponse(existing.response, existing.response_type)
            keys[scope] = KeyRecord(
                scope, fingerprint, KeyState.IN_PROGRESS, _utc(now), _utc(self.policy.claim_expiry(now))
            )
        return Claim(scope, now)

    def transaction(self) -> Any:
        return self._uow.outer(write=True)

    def complete(
        self, tx: FakeUnitOfWork, claim: Claim, response: bytes, response_type: str, now: datetime
    ) -> None:
        keys = tx.rows_for_write().idempotency_keys
        if not self._owned(keys.get(claim.scope), claim):
            raise KeyInUse("the request outlived the idempotency lock timeout and a retry took it over")
        keys[claim.scope] = replace(
            keys[claim.scope],
            state=KeyState.COMPLETED,
            response=response,
            response_type=response_type,
            expires_at=_utc(now + self.policy.ttl),
        )

    def release(self, claim: Claim) -> bool:
        with self._uow(write=True) as u:
            keys = u.rows_for_write().idempotency_keys
            if not self._owned(keys.get(claim.scope), claim):
                return False
            del keys[claim.scope]
            return True

    @staticmethod
    def _owned(record: KeyRecord | None, claim: Claim) -> bool:
        if record is None or record.state is not KeyState.IN_PROGRESS:
            return False
        return record.locked_at == claim.locked_at


class FakeCounterStore:
    """services.rate_limit.CounterStore like SqlCounterStore: one counter per (tenant, bucket,
    window), not counting refused calls; the first call of a window drops the windows before the
    previous one."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, int], int] = {}

    def hit(
        self, tenant_id: str, bucket: str, window: int, admit: Callable[[int, int], bool]
    ) -> tuple[int, int]:
        key = (tenant_id, bucket, window)
        current = self.calls.get(key, 0) + 1
        previous = self.calls.get((tenant_id, bucket, window - 1), 0)
        # A refused call is not counted (and, as in SQL, leaves a row at 0 when it was the first).
        self.calls[key] = current if admit(current, previous) else current - 1
        older = [k for k in self.calls if k[:2] == (tenant_id, bucket) and k[2] < window]
        if current == 1:
            for k in older:
                if k[2] < window - 1:
                    del self.calls[k]
        return current, previous


class FakeCipher:
    """domain.targets.SecretCipher: the "ciphertext" is an opaque handle, so it cannot contain the
    plaintext; another instance (say, after a key change) cannot open it, like FernetSecretBox."""

    _instances = itertools.count(1)

    def __init__(self) -> None:
        self._name = f"sealed-{next(self._instances)}"
        self._sealed: dict[str, bytes] = {}

    def encrypt(self, plaintext: bytes) -> str:
        handle = f"{self._name}-{len(self._sealed)}"
        self._sealed[handle] = plaintext
        return handle

    def decrypt(self, ciphertext: str) -> bytes:
        if ciphertext not in self._sealed:
            raise FailedPrecondition(
                "the stored target secrets cannot be decrypted with TARGET_SECRETS_KEY; "
                "configure the target again or restore the key",
                reason="TARGET_SECRETS_UNREADABLE",
            )
        return self._sealed[ciphertext]


LOSE_ANSWER = "lose the answer"  # a FakeTarget cue: create the ticket, then answer TargetDown(maybe_created)


class FakeTarget:
    """An external target system behind a Connector (external=True, no network): it holds tickets
    by marker, looks a marker up first for check_existing requests like the real connectors, and
    answers each request by default with a new ticket (HTTP 201). `cues[marker]` lists what the
    next requests for that marker get instead, one cue each: a DomainError (nothing created),
    LOSE_ANSWER (created, answer lost), or another Exception, which send() raises (a bug in the
    connector)."""

    external = True

    def __init__(self, target: TargetSystem, batch_size: int = 1) -> None:
        self.target = target
        self.batch_size = batch_size
        self.tickets: list[tuple[str, TicketRef]] = []  # (marker, ticket), every one ever created
        self.requests: list[TicketRequest] = []
        self.resolutions: list[ResolutionRequest] = []
        self.cues: dict[str, list[DomainError | Exception | str]] = {}
        self._lock = threading.Lock()  # the delivery workers' attempts run on a pool

    def cue(self, marker: str, *answers: DomainError | Exception | str) -> None:
        self.cues.setdefault(marker, []).extend(answers)

    def tickets_for(self, marker: str) -> list[TicketRef]:
        return [ref for m, ref in self.tickets if m == marker]

    def send(self, batch: list[TicketRequest]) -> list[TicketRef | DomainError]:
        with self._lock:
            answers: list[TicketRef | DomainError] = []
            for request in batch:
                self.requests.append(request)
                queued = self.cues.get(request.marker)
                cue = queued.pop(0) if queued else None
                if isinstance(cue, Exception) and not isinstance(cue, DomainError):
                    raise cue
                if isinstance(cue, DomainError):
                    answers.append(cue)
                    continue
                found = self.tickets_for(request.marker) if request.check_existing else []
                ref = found[0] if found else self._create(request.marker)
                answers.append(
                    TargetDown("the answer was lost", maybe_created=True) if cue == LOSE_ANSWER else ref
                )
            return answers

    def resolve(self, request: ResolutionRequest) -> TicketRef | DomainError:
        """Records the resolution once per marker (a retry after a lost answer finds it)."""
        with self._lock:
            self.resolutions.append(request)
            return TicketRef(request.ticket, acknowledged=True, http_status=200)

    def _create(self, marker: str) -> TicketRef:
        ref = TicketRef(f"{self.target.value}-{len(self.tickets) + 1}", acknowledged=True, http_status=201)
        self.tickets.append((marker, ref))
        return ref


class FakeConnectorFactory:
    """domain.ports.ConnectorFactory like ConnectorRegistry: MANUAL (the real, in-process connector)
    always; another target only once the tenant configured it, else TARGET_NOT_CONFIGURED."""

    def __init__(self, *targets: FakeTarget) -> None:
        self.manual = ManualConnector()
        self.targets = {t.target: t for t in targets}
        self.configs: list[TargetConfig] = []  # what build() was given, for assertions

    def is_local(self, target: TargetSystem) -> bool:
        return target is TargetSystem.MANUAL

    def build(self, target: TargetSystem, config: TargetConfig | None) -> Connector:
        if target is TargetSystem.MANUAL:
            return self.manual
        if config is None or target not in self.targets:
            raise FailedPrecondition(
                f"target system {target.value} is not configured for this tenant",
                reason="TARGET_NOT_CONFIGURED",
            )
        self.configs.append(config)
        return self.targets[target]


class Clock:
    """A settable clock for the services."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


if TYPE_CHECKING:  # for the type checker only: each fake satisfies its port
    from server.domain.idempotency import KeyStore
    from server.domain.ports import (
        ConnectorFactory,
        DeliveryRepository,
        ExceptionRepository,
        HistoryRepository,
        TargetRepository,
        TokenRecord,
        TokenRepository,
        UnitOfWork,
        UnitOfWorkFactory,
    )
    from server.domain.targets import SecretCipher
    from server.services.clock import Clock as ClockPort
    from server.services.rate_limit import CounterStore

    def _ports(
        uow: FakeUnitOfWork, factory: FakeUnitOfWorkFactory, token: StoredToken, keys: FakeKeyStore
    ) -> None:
        _u: UnitOfWork = uow
        _f: UnitOfWorkFactory = factory
        _e: ExceptionRepository = uow.exceptions
        _h: HistoryRepository = uow.history
        _d: DeliveryRepository = uow.deliveries
        _t: TargetRepository = uow.targets
        _k: TokenRepository = uow.tokens
        _r: TokenRecord = token
        _s: KeyStore = keys
        _c: CounterStore = FakeCounterStore()
        _x: SecretCipher = FakeCipher()
        _n: Connector = FakeTarget(TargetSystem.JIRA)
        _m: ConnectorFactory = FakeConnectorFactory()
        _clock: ClockPort = Clock(datetime.now(UTC))
