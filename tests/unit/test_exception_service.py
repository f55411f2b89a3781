"""ExceptionService's rules over the in-memory fakes (tests/unit/fakes.py): create, read, list,
history, bulk assign/resolve and callbacks."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.connectors.manual import ManualConnector
from server.domain.auth import SCOPES, Principal
from server.domain.dispatch import TargetSystem, dispatch_key
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.exceptions import NewException, Severity, Status
from server.domain.history import Action
from server.services.exceptions import MAX_BATCH_CREATE, CallbackReport, ExceptionService, ListRequest
from tests.unit.fakes import Clock, FakeUnitOfWorkFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
A = Principal("tenant-a", "tok-a", frozenset(SCOPES))
B = Principal("tenant-b", "tok-b", frozenset(SCOPES))


@pytest.fixture
def uow() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def service(uow, clock) -> ExceptionService:
    return ExceptionService(uow, clock)


def make(service: ExceptionService, principal: Principal = A, **fields) -> str:
    fields.setdefault("transaction_id", "txn")
    return service.create(principal, NewException(**fields)).id


# -- create -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "severity"),
    [
        ({}, Severity.LOW),
        ({"occurred_at": NOW - timedelta(hours=24) + timedelta(microseconds=1)}, Severity.LOW),
        ({"occurred_at": NOW - timedelta(hours=24)}, Severity.MEDIUM),
        ({"occurred_at": NOW - timedelta(hours=72)}, Severity.HIGH),
        ({"occurred_at": NOW - timedelta(hours=120)}, Severity.CRITICAL),
        ({"occurred_at": NOW + timedelta(minutes=5)}, Severity.LOW),  # clock skew is tolerated
        ({"amount": "9999.9999", "currency": "EUR"}, Severity.MEDIUM),
        ({"amount": "10000", "currency": "EUR"}, Severity.HIGH),
        ({"amount": "100000.00", "currency": "EUR"}, Severity.CRITICAL),
        ({"amount": "100000.00", "currency": "EUR", "severity": Severity.LOW}, Severity.LOW),
    ],
)
def test_create_classifies_by_amount_and_age_on_the_service_clock(service, fields, severity):
    created = service.create(A, NewException("txn", **fields))
    assert created.severity is severity
    assert service.get(A, created.id).severity is severity


def test_create_stores_an_open_exception_with_its_due_at_and_a_create_history_entry(service, uow):
    due = datetime(2026, 3, 9, 17, 30, tzinfo=UTC)
    created = service.create(
        A, NewException("txn-9", amount="15000.5", currency="USD", due_at=due, metadata={"k": "v"})
    )
    assert (created.tenant_id, created.status, created.due_at) == ("tenant-a", Status.OPEN, due)
    assert created.created_at == created.updated_at == created.occurred_at == NOW
    assert service.get(A, created.id) == created
    (entry,) = service.history(A, created.id, "", 0).items
    assert (entry.action, entry.actor_id, entry.created_at) == (Action.CREATE, "tok-a", NOW)
    assert entry.changes == {"status": "OPEN", "severity": "HIGH"}
    assert uow.db.commits == 1


def test_batch_create_refuses_the_whole_batch_naming_every_bad_item(service, uow):
    items = [NewException("ok"), NewException(""), NewException("ok", amount="1.00")]
    with pytest.raises(InvalidArgument) as err:
        service.batch_create(A, items)
    assert {v.field for v in err.value.violations} == {
        "exceptions[1].transaction_id",
        "exceptions[2].currency",
    }
    assert uow.rows.exceptions == {} and uow.rows.history == {}


def test_single_create_names_fields_without_a_prefix(service):
    with pytest.raises(InvalidArgument) as err:
        service.create(A, NewException("", currency="usd"))
    assert {v.field for v in err.value.violations} == {"transaction_id", "currency"}


@pytest.mark.parametrize("count", [0, MAX_BATCH_CREATE + 1])
def test_batch_create_size_limits(service, count):
    with pytest.raises(InvalidArgument) as err:
        service.batch_create(A, [NewException(f"t{i}") for i in range(count)])
    assert err.value.violations[0].field == "exceptions"


def test_batch_create_keeps_the_request_order(service):
    made = service.batch_create(A, [NewException(f"t{i}") for i in range(5)])
    assert [e.transaction_id for e in made] == [f"t{i}" for i in range(5)]
    assert len({e.id for e in made}) == 5


# -- read ---------------------------------------------------------------------------------------------


def test_get_canonicalises_the_id_and_hides_other_tenants_rows(service):
    eid = make(service)
    assert service.get(A, eid.upper()).id == eid
    for principal, wanted in ((B, eid), (A, str(uuid.uuid4()))):
        with pytest.raises(NotFound):
            service.get(principal, wanted)
    with pytest.raises(InvalidArgument) as err:
        service.get(A, "not-a-uuid")
    assert err.value.violations[0].field == "exception_id"


def test_history_is_oldest_first_pages_and_belongs_to_the_tenant(service, clock):
    eid = make(service)
    clock.now = NOW + timedelta(minutes=1)
    service.bulk_assign(A, [eid], "alice")
    clock.now = NOW + timedelta(minutes=2)
    service.bulk_resolve(A, [eid], "written off", "duplicate")
    first = service.history(A, eid, "", 2)
    assert [h.action for h in first.items] == [Action.CREATE, Action.ASSIGN] and first.has_more
    rest = service.history(A, eid, first.next_cursor, 2)
    assert [h.action for h in rest.items] == [Action.RESOLVE] and not rest.has_more
    assert rest.items[0].changes == {
        "status": {"from": "ASSIGNED", "to": "RESOLVED"},
        "resolution": "written off",
    }
    with pytest.raises(NotFound):
        service.history(B, eid, "", 0)
    with pytest.raises(InvalidArgument):  # a cursor of another exception's history
        service.history(A, make(service), first.next_cursor, 2)


# -- list ---------------------------------------------------------------------------------------------


def test_list_walks_every_row_of_the_tenant_once_newest_first(service, clock):
    ids = []
    for i in range(7):
        clock.now = NOW + timedelta(seconds=i // 2)  # pairs share created_at: the id breaks the tie
        ids.append(make(service))
    make(service, B)
    expected = [
        e.id
        for e in sorted((service.get(A, i) for i in ids), key=lambda e: (e.created_at, e.id), reverse=True)
    ]
    seen, cursor = [], ""
    while True:
        page = service.list(A, ListRequest(limit=3, cursor=cursor))
        seen += [e.id for e in page.items]
        if not page.has_more:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_list_filters_and_a_cursor_stays_bound_to_its_filters(service):
    assigned = [make(service), make(service)]
    make(service)
    service.bulk_assign(A, assigned, "alice")
    page = service.list(A, ListRequest(assigned_to="alice", limit=1, sort_by="id", sort_order="asc"))
    assert [e.id for e in page.items] == [min(assigned)] and page.has_more
    rest = service.list(
        A, ListRequest(assigned_to="alice", limit=1, sort_by="id", sort_order="asc", cursor=page.next_cursor)
    )
    assert [e.id for e in rest.items] == [max(assigned)] and not rest.has_more
    for other in (ListRequest(assigned_to="bob"), ListRequest(assigned_to="alice", sort_order="desc")):
        moved = replace(other, limit=1, sort_by="id", cursor=page.next_cursor)
        with pytest.raises(InvalidArgument) as err:
            service.list(A, moved)
        assert err.value.violations[0].field == "cursor"
    assert [e.status for e in service.list(A, ListRequest(status=Status.ASSIGNED)).items] == [
        Status.ASSIGNED
    ] * 2


def test_list_filters_by_external_system_whatever_its_case_and_by_date(service, uow, clock):
    dispatched = make(service)
    with uow(write=True) as u:
        (e,) = u.exceptions.get_many("tenant-a", [dispatched]).values()
        u.exceptions.update_many([e.mark_dispatched("manual", "MANUAL-1", NOW)])
    clock.now = NOW + timedelta(days=1)
    later = make(service)
    assert [e.id for e in service.list(A, ListRequest(external_system="Manual")).items] == [dispatched]
    window = ListRequest(date_from="2026-03-03T12:00:00+00:00", date_to="2026-03-03T13:00:00Z")
    assert [e.id for e in service.list(A, window).items] == [later]
    before = ListRequest(date_to="2026-03-03T12:00:00Z")  # date_to is exclusive
    assert [e.id for e in service.list(A, before).items] == [dispatched]


def test_list_reports_every_bad_parameter_at_once(service):
    with pytest.raises(InvalidArgument) as err:
        service.list(
            A,
            ListRequest(
                limit=201,
                sort_by="amount",
                assigned_to="x" * 256,
                date_from="yesterday",
                date_to="2026-03-01T00:00:00",
            ),
        )
    assert [v.field for v in err.value.violations] == [
        "limit",
        "sort_by",
        "assigned_to",
        "date_from",
        "date_to",
    ]


# -- bulk assign / resolve ----------------------------------------------------------------------------


def test_bulk_assign_mixed_outcomes(service, uow, clock):
    fresh, reassigned, resolved = make(service), make(service), make(service)
    theirs, missing = make(service, B), str(uuid.uuid4())
    service.bulk_assign(A, [reassigned], "bob")
    service.bulk_resolve(A, [resolved], "done", "")
    clock.now = NOW + timedelta(hours=1)
    outcome = service.bulk_assign(
        A, [missing, fresh, resolved, reassigned.upper(), theirs, fresh, reassigned], "  alice  "
    )
    assert outcome.total == 5  # duplicates collapse, whatever their case
    assert outcome.succeeded == [fresh, reassigned]
    assert [(f.exception_id, f.reason, f.error) for f in outcome.failed] == [
        (missing, "NOT_FOUND", "exception not found"),
        (resolved, "INVALID_STATE", "exception is resolved"),
        (theirs, "NOT_FOUND", "exception not found"),
    ]
    got = {i: service.get(A, i) for i in (fresh, reassigned, resolved)}
    assert [(got[i].status, got[i].assigned_to) for i in (fresh, reassigned)] == [
        (Status.ASSIGNED, "alice")
    ] * 2
    assert got[fresh].updated_at == NOW + timedelta(hours=1)
    assert (got[resolved].status, got[resolved].assigned_to, got[resolved].updated_at) == (
        Status.RESOLVED,
        None,
        NOW,
    )
    assert service.get(B, theirs).status is Status.OPEN
    reassign = service.history(A, reassigned, "", 0).items[-1]
    assert reassign.changes == {
        "status": {"from": "ASSIGNED", "to": "ASSIGNED"},
        "assigned_to": {"from": "bob", "to": "alice"},
    }
    # No ASSIGN entry for the refused item (both entries share NOW, so their order is the ids').
    assert sorted(h.action for h in service.history(A, resolved, "", 0).items) == [
        Action.CREATE,
        Action.RESOLVE,
    ]


@pytest.mark.parametrize(("assignee", "problem"), [("   ", "is required"), ("x" * 256, "at most 255")])
def test_bulk_assign_validates_the_assignee_before_touching_anything(service, uow, assignee, problem):
    eid = make(service)
    commits = uow.db.commits
    with pytest.raises(InvalidArgument) as err:
        service.bulk_assign(A, [eid], assignee)
    assert err.value.violations[0].field == "assignee" and problem in err.value.violations[0].description
    assert uow.db.commits == commits


def test_bulk_ids_are_validated_as_a_whole(service):
    with pytest.raises(InvalidArgument) as err:
        service.bulk_resolve(A, [str(uuid.uuid4()), "nope"], "done", "")
    assert [v.field for v in err.value.violations] == ["exception_ids[1]"]
    with pytest.raises(InvalidArgument):
        service.bulk_assign(A, [], "alice")


def test_bulk_resolve_stores_resolution_and_reason_and_resolved_is_final(service, clock):
    a, b = make(service), make(service)
    outcome = service.bulk_resolve(A, [a, b], " written off ", " duplicate ")
    assert outcome.succeeded == [a, b] and outcome.failed == []
    got = service.get(A, a)
    assert (got.status, got.resolution_notes, got.resolution_reason) == (
        Status.RESOLVED,
        "written off",
        "duplicate",
    )
    clock.now = NOW + timedelta(hours=1)
    for change in (
        lambda: service.bulk_resolve(A, [a], "again", ""),
        lambda: service.bulk_assign(A, [a], "x"),
    ):
        again = change()
        assert again.succeeded == [] and [f.reason for f in again.failed] == ["INVALID_STATE"]
    assert service.get(A, a) == got  # untouched, updated_at included


def test_bulk_resolve_history_records_the_resolution_as_stored(service):
    eid = make(service)
    service.bulk_resolve(A, [eid], "  written off\n", "duplicate")
    [entry] = [h for h in service.history(A, eid, "", 0).items if h.action is Action.RESOLVE]
    assert entry.changes["resolution"] == service.get(A, eid).resolution_notes == "written off"


def test_bulk_resolve_without_a_reason_stores_none(service):
    eid = make(service)
    service.bulk_resolve(A, [eid], "done", "   ")
    assert service.get(A, eid).resolution_reason is None


def test_bulk_resolve_validates_its_fields(service):
    with pytest.raises(InvalidArgument) as err:
        service.bulk_resolve(A, [str(uuid.uuid4())], " ", "r" * 1001)
    assert [v.field for v in err.value.violations] == ["resolution", "reason"]


# -- callbacks ----------------------------------------------------------------------------------------


@pytest.fixture
def dispatched(service, uow):
    """An exception dispatched to MANUAL (as DispatchService records it): (id, reference)."""
    eid = make(service)
    reference = ManualConnector.create(dispatch_key(TargetSystem.MANUAL, eid, "")).external_reference
    with uow(write=True) as u:
        (e,) = u.exceptions.get_many("tenant-a", [eid]).values()
        u.exceptions.update_many([e.mark_dispatched("MANUAL", reference, NOW)])
    return eid, reference


def report(reference: str, status: Status | None = Status.RESOLVED, **fields) -> CallbackReport:
    return CallbackReport(fields.pop("external_system", "manual"), reference, status, **fields)


def test_a_resolved_callback_resolves_and_a_repeat_changes_nothing(service, clock, dispatched):
    eid, reference = dispatched
    clock.now = NOW + timedelta(hours=1)
    service.callback(A, eid, report(f" {reference} ", resolution_notes="fixed upstream"))
    got = service.get(A, eid)
    assert (got.status, got.resolution_notes, got.resolution_reason) == (
        Status.RESOLVED,
        "fixed upstream",
        "resolved in MANUAL",
    )
    entry = service.history(A, eid, "", 0).items[-1]
    assert (entry.action, entry.actor_id) == (Action.CALLBACK, "tok-a")
    assert entry.changes == {
        "status": {"from": "OPEN", "to": "RESOLVED"},
        "external_system": "MANUAL",
        "external_issue_id": reference,
    }
    clock.now = NOW + timedelta(hours=2)
    service.callback(A, eid, report(reference, resolution_notes="other words"))
    assert service.get(A, eid) == got
    assert len(service.history(A, eid, "", 0).items) == 2


def test_an_assigned_callback_assigns_to_the_reported_assignee_or_the_system(service, dispatched):
    eid, reference = dispatched
    service.callback(A, eid, report(reference, Status.ASSIGNED))
    assert (service.get(A, eid).status, service.get(A, eid).assigned_to) == (Status.ASSIGNED, "MANUAL")
    service.callback(A, eid, report(reference, Status.ASSIGNED, assignee=" carol "))
    assert service.get(A, eid).assigned_to == "carol"
    service.callback(A, eid, report(reference))
    got = service.get(A, eid)
    assert (got.status, got.resolution_notes) == (Status.RESOLVED, "resolved in MANUAL")
    with pytest.raises(FailedPrecondition) as err:
        service.callback(A, eid, report(reference, Status.ASSIGNED))
    assert (err.value.reason, err.value.message) == ("INVALID_STATE", "exception is resolved")


def test_a_callback_must_name_the_linked_system_and_issue(service, dispatched):
    eid, reference = dispatched
    undispatched = make(service)
    for target, wrong in (
        (eid, report("MANUAL-OTHER")),
        (eid, report(reference, external_system="JIRA")),
        (undispatched, report(reference)),
    ):
        with pytest.raises(FailedPrecondition) as err:
            service.callback(A, target, wrong)
        assert err.value.reason == "INVALID_STATE"
    assert service.get(A, eid).status is Status.OPEN
    with pytest.raises(NotFound):
        service.callback(B, eid, report(reference))


def test_a_callback_validates_every_field_at_once(service):
    bad = CallbackReport(" ", "", Status.OPEN, assignee="a" * 256, resolution_notes="n" * 1001)
    with pytest.raises(InvalidArgument) as err:
        service.callback(A, str(uuid.uuid4()), bad)
    assert [v.field for v in err.value.violations] == [
        "status",
        "external_system",
        "external_issue_id",
        "assignee",
        "resolution_notes",
    ]
