"""Use cases on stored exceptions: create, read, list, history, assign, resolve, callbacks."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

from server.domain.auth import Principal
from server.domain.bulk import BulkOutcome, unique_ids
from server.domain.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, Violations
from server.domain.exceptions import (
    LIMITS,
    NewException,
    ReconException,
    Severity,
    Status,
    build_exception,
    parse_uuid,
    validate_new_exception,
)
from server.domain.history import Action, HistoryEntry, change
from server.domain.paging import (
    ExceptionFilter,
    ExceptionQuery,
    PageAfter,
    decode_cursor,
    encode_cursor,
    parse_limit,
    parse_sort,
    sort_value,
)
from server.domain.ports import UnitOfWork, UnitOfWorkFactory
from server.domain.sla import default_policy, with_due_date
from server.services.clock import Clock, utc_now
from server.services.resolutions import record_resolutions

MAX_BATCH_CREATE = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class ListRequest:
    status: Status | None = None
    severity: Severity | None = None
    assigned_to: str = ""
    external_system: str = ""
    date_from: str = ""
    date_to: str = ""
    cursor: str = ""
    limit: int = 0
    sort_by: str = ""
    sort_order: str = ""
    overdue: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str
    limit: int

    @property
    def has_more(self) -> bool:
        return bool(self.next_cursor)


@dataclass(frozen=True)
class CallbackReport:
    external_system: str
    external_issue_id: str
    status: Status | None
    assignee: str = ""
    resolution_notes: str = ""


def _parse_time(value: str, field_name: str, v: Violations) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        v.add(field_name, "must be an RFC 3339 time like 2026-01-31T00:00:00Z")
        return None
    if parsed.tzinfo is None:
        v.add(field_name, "must include a UTC offset (e.g. Z)")
        return None
    try:
        # 0001-01-01T00:00:00+14:00 parses but is before year 1 in UTC: the driver would overflow.
        return parsed.astimezone(UTC)
    except OverflowError:
        v.add(field_name, "is out of range")
        return None


def _page(rows: list[T], limit: int, scope: str, key: Callable[[T], PageAfter]) -> Page[T]:
    if len(rows) <= limit:
        return Page(rows, "", limit)
    items = rows[:limit]
    return Page(items, encode_cursor(scope, key(items[-1])), limit)


class AutoDispatch(Protocol):
    """Dispatches new exceptions whose routing rule says auto_dispatch (services/dispatch.py)."""

    def on_create(
        self, uow: UnitOfWork, principal: Principal, created: builtins.list[ReconException]
    ) -> builtins.list[ReconException]: ...

    def wake(self) -> None: ...


class ExceptionService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock = utc_now, auto_dispatch: AutoDispatch | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        # Tells this process's delivery workers that a resolution recorded deliveries (API.md §9).
        self.deliveries_recorded: Callable[[], None] = lambda: None
        self._auto = auto_dispatch

    # -- create ---------------------------------------------------------------------------

    def create(self, principal: Principal, item: NewException) -> ReconException:
        return self.batch_create(principal, [item], prefix_fields=False)[0]

    def batch_create(
        self, principal: Principal, items: list[NewException], prefix_fields: bool = True
    ) -> list[ReconException]:
        if not 1 <= len(items) <= MAX_BATCH_CREATE:
            raise InvalidArgument.field("exceptions", f"must contain 1-{MAX_BATCH_CREATE} items")
        now = self._clock()
        violations = Violations()
        for index, item in enumerate(items):
            try:
                validate_new_exception(item, now, prefix=f"exceptions[{index}]." if prefix_fields else "")
            except DomainError as exc:
                for violation in exc.violations:
                    violations.add(violation.field, violation.description)
        violations.raise_if_any()  # all-or-nothing: one bad item refuses the whole batch
        created = [build_exception(principal.tenant_id, item, now) for item in items]
        with self._uow(write=True) as uow:
            if not all(e.due_at_explicit for e in created):
                policy = uow.sla.get(principal.tenant_id) or default_policy(principal.tenant_id)
                created = [with_due_date(e, policy) for e in created]
            uow.exceptions.add_many(created)
            uow.history.add_many(self._created_entries(principal, created, now))
            answered = self._auto.on_create(uow, principal, created) if self._auto else created
        if answered is not created and self._auto is not None:
            self._auto.wake()
        return answered

    def _created_entries(
        self, principal: Principal, created: builtins.list[ReconException], now: datetime
    ) -> builtins.list[HistoryEntry]:
        return [
            HistoryEntry.record(
                principal.tenant_id,
                e.id,
                Action.CREATE,
                principal.token_id,
                now,
                {"status": e.status.name, "severity": e.severity.name},
            )
            for e in created
        ]

    # -- read -----------------------------------------------------------------------------

    def get(self, principal: Principal, exception_id: str) -> ReconException:
        exception_id = parse_uuid(exception_id, "exception_id")
        with self._uow(write=False) as uow:
            return self._load(uow, principal, exception_id)

    @staticmethod
    def _load(uow: UnitOfWork, principal: Principal, exception_id: str) -> ReconException:
        found = uow.exceptions.get(principal.tenant_id, exception_id)
        if found is None:
            raise NotFound("exception not found")
        return found

    # Below this method, `list` in this class's annotations names the method: they say builtins.list.
    def list(self, principal: Principal, request: ListRequest) -> Page[ReconException]:
        v = Violations()
        limit = parse_limit(request.limit, v)
        sort_by, descending = parse_sort(request.sort_by, request.sort_order, v)
        if request.overdue and not request.sort_by.strip():
            # The overdue work queue: most overdue first (ix_exceptions_tenant_open_due).
            sort_by, descending = "due_at", request.sort_order.strip().lower() == "desc"
        for name, value in (
            ("assigned_to", request.assigned_to),
            ("external_system", request.external_system),
        ):
            if len(value) > 255:
                v.add(name, "must be at most 255 characters")
        filters = ExceptionFilter(
            status=request.status,
            severity=request.severity,
            assigned_to=request.assigned_to or None,
            external_system=request.external_system.upper() or None,
            date_from=_parse_time(request.date_from, "date_from", v),
            date_to=_parse_time(request.date_to, "date_to", v),
            overdue=request.overdue,
        )
        v.raise_if_any()
        scope = f"{sort_by}:{'desc' if descending else 'asc'}:{filters.digest()}"
        after = decode_cursor(request.cursor, scope)
        query = ExceptionQuery(filters, sort_by, descending, limit, after, now=self._clock())
        with self._uow(write=False) as uow:
            rows = uow.exceptions.list(principal.tenant_id, query)
        return _page(rows, limit, scope, lambda e: PageAfter(sort_value(e, sort_by), e.id))

    def history(self, principal: Principal, exception_id: str, cursor: str, limit: int) -> Page[HistoryEntry]:
        exception_id = parse_uuid(exception_id, "exception_id")
        v = Violations()
        limit = parse_limit(limit, v)
        v.raise_if_any()
        scope = f"history:{exception_id}"
        after = decode_cursor(cursor, scope)
        with self._uow(write=False) as uow:
            self._load(uow, principal, exception_id)
            rows = uow.history.list(principal.tenant_id, exception_id, after, limit)
        return _page(rows, limit, scope, lambda h: PageAfter(sort_value(h, "created_at"), h.id))

    # -- bulk changes ---------------------------------------------------------------------

    def bulk_assign(self, principal: Principal, raw_ids: builtins.list[str], assignee: str) -> BulkOutcome:
        v = Violations()
        if not assignee.strip():
            v.add("assignee", "is required")
        elif len(assignee) > LIMITS["assignee"]:
            v.add("assignee", f"must be at most {LIMITS['assignee']} characters")
        v.raise_if_any()
        ids = unique_ids(raw_ids)

        def apply(e: ReconException, now: datetime) -> tuple[ReconException, HistoryEntry]:
            updated = e.assign(assignee.strip(), now)
            changes = {"status": change(e.status.name, updated.status.name)}
            changes["assigned_to"] = change(e.assigned_to, updated.assigned_to)
            return updated, self._entry(principal, e.id, Action.ASSIGN, now, changes)

        return self._bulk_change(principal, ids, apply)

    def bulk_resolve(
        self, principal: Principal, raw_ids: builtins.list[str], resolution: str, reason: str
    ) -> BulkOutcome:
        v = Violations()
        if not resolution.strip():
            v.add("resolution", "is required")
        elif len(resolution) > LIMITS["resolution"]:
            v.add("resolution", f"must be at most {LIMITS['resolution']} characters")
        if len(reason) > LIMITS["resolution_reason"]:
            v.add("reason", f"must be at most {LIMITS['resolution_reason']} characters")
        v.raise_if_any()
        ids = unique_ids(raw_ids)

        def apply(e: ReconException, now: datetime) -> tuple[ReconException, HistoryEntry]:
            updated = e.resolve(resolution.strip(), reason.strip(), now)
            # What was stored (stripped), not what was sent.
            changes = {
                "status": change(e.status.name, updated.status.name),
                "resolution": updated.resolution_notes,
            }
            return updated, self._entry(principal, e.id, Action.RESOLVE, now, changes)

        def push(uow: UnitOfWork, updated: builtins.list[ReconException], now: datetime) -> int:
            return record_resolutions(uow, principal.tenant_id, updated, None, principal.token_id, now)

        return self._bulk_change(principal, ids, apply, push)

    def _entry(
        self, principal: Principal, eid: str, action: Action, now: datetime, changes: dict
    ) -> HistoryEntry:
        return HistoryEntry.record(principal.tenant_id, eid, action, principal.token_id, now, changes)

    def _bulk_change(
        self,
        principal: Principal,
        ids: builtins.list[str],
        apply: Callable[[ReconException, datetime], tuple[ReconException, HistoryEntry]],
        after: Callable[[UnitOfWork, builtins.list[ReconException], datetime], int] | None = None,
    ) -> BulkOutcome:
        """One read of all rows, per-item rules, one batched write: O(1) statements per batch."""
        outcome = BulkOutcome(ids)
        now = self._clock()
        updated: list[ReconException] = []
        history: list[HistoryEntry] = []
        with self._uow(write=True) as uow:
            found = uow.exceptions.get_many(principal.tenant_id, ids)
            for eid in ids:
                try:
                    if eid not in found:
                        raise NotFound("exception not found")
                    new, entry = apply(found[eid], now)
                except DomainError as exc:
                    outcome.fail(eid, exc)
                    continue
                updated.append(new)
                history.append(entry)
                outcome.succeeded.append(eid)
            uow.exceptions.update_many(updated)
            uow.history.add_many(history)
            recorded = after(uow, updated, now) if after is not None else 0
        if recorded:
            self.deliveries_recorded()
        return outcome

    # -- callbacks from target systems --------------------------------------------------------

    def callback(self, principal: Principal, exception_id: str, report: CallbackReport) -> None:
        exception_id = parse_uuid(exception_id, "exception_id")
        v = Violations()
        if report.status not in (Status.ASSIGNED, Status.RESOLVED):
            v.add("status", "must be ASSIGNED or RESOLVED")
        if not report.external_system.strip():
            v.add("external_system", "is required")
        if not report.external_issue_id.strip():
            v.add("external_issue_id", "is required")
        if len(report.assignee) > LIMITS["assignee"]:
            v.add("assignee", f"must be at most {LIMITS['assignee']} characters")
        if len(report.resolution_notes) > LIMITS["resolution_reason"]:
            v.add("resolution_notes", f"must be at most {LIMITS['resolution_reason']} characters")
        v.raise_if_any()
        now = self._clock()
        with self._uow(write=True) as uow:
            current = self._load(uow, principal, exception_id)
            linked = (current.external_system or "").upper() == report.external_system.strip().upper()
            if not linked or current.external_issue_id != report.external_issue_id.strip():
                raise FailedPrecondition(
                    "exception is not linked to that external issue", reason="INVALID_STATE"
                )
            if current.status is Status.RESOLVED and report.status is Status.RESOLVED:
                return  # a target repeating itself; nothing changes
            if report.status is Status.ASSIGNED:
                new = current.assign(report.assignee.strip() or current.external_system or "", now)
            else:
                notes = report.resolution_notes.strip() or f"resolved in {current.external_system}"
                new = current.resolve(notes, f"resolved in {current.external_system}", now)
            changes = {
                "status": change(current.status.name, new.status.name),
                "external_system": current.external_system,
                "external_issue_id": current.external_issue_id,
            }
            uow.exceptions.update_many([new])
            uow.history.add_many([self._entry(principal, exception_id, Action.CALLBACK, now, changes)])
            # Told everywhere it was delivered but the system that reported it (no echo).
            origin = report.external_system.strip()
            recorded = record_resolutions(uow, principal.tenant_id, [new], origin, principal.token_id, now)
        if recorded:
            self.deliveries_recorded()
