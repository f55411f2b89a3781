"""SqlExceptionRepository: round trips, tenant isolation, filters, sorting and keyset pages."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event

from server.domain.errors import InvalidArgument
from server.domain.exceptions import ReconException, Severity, Status
from server.domain.paging import SORT_FIELDS, ExceptionFilter, ExceptionQuery, PageAfter
from server.storage.engine import is_sqlite
from server.storage.repositories import sort_value
from tests.support.plans import index_plan, sent_to

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def full_exception(new_exception, tenant="tenant-a"):
    return new_exception(
        tenant,
        transaction_id="txn-42",
        severity=Severity.HIGH,
        status=Status.ASSIGNED,
        reason="amount mismatch",
        amount=Decimal("999999999999999999.9999"),  # the largest amount the API accepts
        currency="EUR",
        source="bank-feed",
        assigned_to="alice@example.com",
        due_at=datetime(2026, 2, 1, 12, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5))),
        external_system="JIRA",
        external_issue_id="REC-7",
        resolution_notes="notes",
        resolution_reason="why",
        metadata={"region": "emea", "ünïcode": "✓"},
        created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        updated_at=datetime(2026, 1, 3, 3, 4, 5, 1, tzinfo=UTC),
        occurred_at=datetime(2025, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-8))),
    )


def test_round_trip_every_field(uow, new_exception):
    item = full_exception(new_exception)
    minimal = new_exception(transaction_id="txn-min")
    with uow(write=True) as u:
        u.exceptions.add_many([item, minimal])
    with uow(write=False) as u:
        got = u.exceptions.get("tenant-a", item.id)
        got_min = u.exceptions.get("tenant-a", minimal.id)
    assert got == item
    assert got_min == minimal
    for value in (got.created_at, got.updated_at, got.occurred_at, got.due_at):
        assert value.tzinfo is UTC  # normalised to UTC, whatever offset was written
    assert got.due_at == datetime(2026, 2, 1, 7, 30, 0, 123456, tzinfo=UTC)
    assert isinstance(got.amount, Decimal) and got.amount == Decimal("999999999999999999.9999")
    assert isinstance(got.severity, Severity) and isinstance(got.status, Status)
    assert got_min.amount is None and got_min.due_at is None and got_min.metadata == {}


def test_amount_is_returned_with_four_decimal_places(uow, new_exception):
    item = new_exception(amount=Decimal("1250.1"), currency="USD")
    with uow(write=True) as u:
        u.exceptions.add_many([item])
    with uow(write=False) as u:
        assert str(u.exceptions.get("tenant-a", item.id).amount) == "1250.1000"


def test_datetimes_come_back_utc_whatever_the_session_time_zone(uow, new_exception, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no session time zone")
    item = new_exception()
    with uow(write=True) as u:
        u.exceptions.add_many([item])
    with uow(write=False) as u:
        u.connection.exec_driver_sql("SET LOCAL TIME ZONE 'Asia/Kolkata'")
        got = u.exceptions.get("tenant-a", item.id)
    assert got.created_at == item.created_at and got.created_at.tzinfo is UTC


def test_external_system_is_stored_upper_case(uow, new_exception):
    item = new_exception(external_system="ServiceNow")
    with uow(write=True) as u:
        u.exceptions.add_many([item])
    with uow(write=False) as u:
        assert u.exceptions.get("tenant-a", item.id).external_system == "SERVICENOW"


def test_update_many_rewrites_each_row_and_nothing_else(uow, new_exception):
    a, b, c = (new_exception() for _ in range(3))
    with uow(write=True) as u:
        u.exceptions.add_many([a, b, c])
    later = T0 + timedelta(days=400)
    a2 = a.assign("bob", later)
    b2 = replace(b.resolve("fixed", "dup", later), metadata={"k": "v"}, amount=Decimal("1.5"), currency="USD")
    with uow(write=True) as u:
        u.exceptions.update_many([a2, b2])
        u.exceptions.update_many([])
    with uow(write=False) as u:
        got = u.exceptions.get_many("tenant-a", [a.id, b.id, c.id])
    assert got[a.id] == a2
    assert got[b.id] == replace(b2, amount=Decimal("1.5000"))
    assert got[c.id] == c


def test_update_many_cannot_touch_another_tenants_row(uow, new_exception):
    mine = new_exception("tenant-a")
    with uow(write=True) as u:
        u.exceptions.add_many([mine])
    forged = replace(mine, tenant_id="tenant-b", reason="hijacked")
    with uow(write=True) as u:
        u.exceptions.update_many([forged])
    with uow(write=False) as u:
        assert u.exceptions.get("tenant-a", mine.id) == mine


def test_tenant_isolation(uow, new_exception):
    mine, theirs = new_exception("tenant-a"), new_exception("tenant-b")
    with uow(write=True) as u:
        u.exceptions.add_many([mine, theirs])
    query = ExceptionQuery(ExceptionFilter(), limit=50)
    with uow(write=False) as u:
        assert u.exceptions.get("tenant-a", theirs.id) is None
        assert u.exceptions.get_many("tenant-a", [mine.id, theirs.id]) == {mine.id: mine}
        assert [e.id for e in u.exceptions.list("tenant-a", query)] == [mine.id]
        assert [e.id for e in u.exceptions.list("tenant-b", query)] == [theirs.id]
        assert u.exceptions.list("tenant-c", query) == []


def test_get_many_ignores_duplicates_unknown_and_malformed_ids(uow, new_exception):
    item = new_exception()
    with uow(write=True) as u:
        u.exceptions.add_many([item])
    with uow(write=True) as u:  # write: exercises SELECT ... FOR UPDATE too
        got = u.exceptions.get_many("tenant-a", [item.id, item.id, str(uuid.uuid4()), "not-a-uuid"])
        assert u.exceptions.get("tenant-a", "not-a-uuid") is None
        assert u.exceptions.get_many("tenant-a", []) == {}
    assert got == {item.id: item}


@contextmanager
def statements(engine) -> Iterator[list[str]]:
    """The statements sent to the database (one entry per round trip, BEGIN/COMMIT excluded)."""
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.split()[0].upper() not in ("BEGIN", "PRAGMA"):
            sent.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_batches_are_one_statement_each(uow, new_exception, engine):
    items = [new_exception(amount=Decimal(i), currency="USD") for i in range(300)]
    with statements(engine) as sent, uow(write=True) as u:
        u.exceptions.add_many(items)
    assert sent == ["INSERT"]
    with statements(engine) as sent, uow(write=False) as u:
        got = u.exceptions.get_many("tenant-a", [e.id for e in items])
    assert sent == ["SELECT"] and len(got) == 300
    changed = [e.assign("bob", e.updated_at + timedelta(seconds=1)) for e in items]
    with statements(engine) as sent, uow(write=True) as u:
        u.exceptions.update_many(changed)
    assert sent == ["UPDATE"]  # one executemany
    with uow(write=False) as u:
        assert u.exceptions.get_many("tenant-a", [e.id for e in items]) == {e.id: e for e in changed}


# -- list: filters ------------------------------------------------------------------------------


@pytest.fixture
def assorted(uow, new_exception):
    """Twelve rows of tenant-a with varied fields, one minute apart, plus one of tenant-b."""
    rows = []
    for i, (severity, status) in enumerate(
        itertools.product(Severity, [Status.OPEN, Status.ASSIGNED, Status.RESOLVED])
    ):
        rows.append(
            new_exception(
                severity=severity,
                status=status,
                assigned_to="alice" if i % 3 == 0 else ("bob" if i % 3 == 1 else None),
                external_system="JIRA" if i % 2 == 0 else None,
                now=T0 + timedelta(minutes=i),
            )
        )
    with uow(write=True) as u:
        u.exceptions.add_many([*rows, new_exception("tenant-b", now=T0)])
    return rows


def listed(uow, query, tenant="tenant-a"):
    with uow(write=False) as u:
        return u.exceptions.list(tenant, query)


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        (ExceptionFilter(status=Status.ASSIGNED), lambda e: e.status is Status.ASSIGNED),
        (ExceptionFilter(severity=Severity.CRITICAL), lambda e: e.severity is Severity.CRITICAL),
        (ExceptionFilter(assigned_to="alice"), lambda e: e.assigned_to == "alice"),
        (ExceptionFilter(external_system="jira"), lambda e: e.external_system == "JIRA"),
        (ExceptionFilter(external_system="WEBHOOK"), lambda e: False),
        (
            ExceptionFilter(date_from=T0 + timedelta(minutes=3)),
            lambda e: e.created_at >= T0 + timedelta(minutes=3),
        ),
        (
            ExceptionFilter(date_to=T0 + timedelta(minutes=3)),
            lambda e: e.created_at < T0 + timedelta(minutes=3),
        ),
        (
            ExceptionFilter(
                status=Status.OPEN,
                date_from=T0 + timedelta(minutes=3),
                date_to=T0 + timedelta(minutes=9),
            ),
            lambda e: (
                e.status is Status.OPEN
                and T0 + timedelta(minutes=3) <= e.created_at < T0 + timedelta(minutes=9)
            ),
        ),
    ],
    ids=[
        "status",
        "severity",
        "assigned_to",
        "external_system",
        "external_none",
        "date_from",
        "date_to",
        "combined",
    ],
)
def test_list_filters(uow, assorted, flt, keep):
    expected = sorted((e for e in assorted if keep(e)), key=lambda e: (e.created_at, e.id), reverse=True)
    got = listed(uow, ExceptionQuery(flt, limit=100))
    assert [e.id for e in got] == [e.id for e in expected]


def test_date_bounds_accept_other_offsets(uow, assorted):
    # 01:03 at +01:00 is 00:03 UTC: the fourth row, inclusive.
    flt = ExceptionFilter(date_from=datetime(2026, 1, 1, 1, 3, tzinfo=timezone(timedelta(hours=1))))
    assert len(listed(uow, ExceptionQuery(flt, limit=100))) == len(assorted) - 3


def test_list_returns_limit_plus_one(uow, assorted):
    assert len(listed(uow, ExceptionQuery(ExceptionFilter(), limit=5))) == 6
    assert len(listed(uow, ExceptionQuery(ExceptionFilter(), limit=12))) == 12


def test_a_cursor_with_a_malformed_id_is_refused(uow, assorted):
    query = ExceptionQuery(
        ExceptionFilter(), after=PageAfter(sort_value(assorted[0], "created_at"), "x' OR 1=1")
    )
    with pytest.raises(InvalidArgument):
        listed(uow, query)


def test_a_cursor_with_a_malformed_value_is_refused(uow, assorted):
    for sort_by, value in (("created_at", "yesterday"), ("severity", "HIGH")):
        query = ExceptionQuery(ExceptionFilter(), sort_by=sort_by, after=PageAfter(value, assorted[0].id))
        with pytest.raises(InvalidArgument):
            listed(uow, query)


# -- list: sorting and keyset pagination --------------------------------------------------------


def expected_order(rows: list[ReconException], sort_by: str, descending: bool) -> list[str]:
    # The row's uuid string sorts like the database's uuid (PostgreSQL) and hex text (SQLite).
    key = (lambda e: e.id) if sort_by == "id" else (lambda e: (getattr(e, sort_by), e.id))
    return [e.id for e in sorted(rows, key=key, reverse=descending)]


NO_FILTER = ExceptionFilter()


def walk(uow, sort_by, descending, limit, flt=NO_FILTER, between_pages=None):
    seen, after, pages = [], None, 0
    while True:
        page = listed(uow, ExceptionQuery(flt, sort_by, descending, limit, after))
        assert len(page) <= limit + 1
        seen.extend(e.id for e in page[:limit])
        pages += 1
        if len(page) <= limit:
            return seen
        last = page[limit - 1]
        after = PageAfter(sort_value(last, sort_by), last.id)
        if between_pages:
            between_pages(pages)


@pytest.fixture
def tied(uow, new_exception):
    """40 rows whose sort values collide a lot: 4 distinct created_at, 4 severities, 2 updated_at."""
    rows = []
    for i in range(40):
        created = T0 + timedelta(seconds=i % 4)
        rows.append(
            new_exception(
                severity=Severity(i % 4 + 1),
                status=Status((i // 4) % 4 + 1),
                created_at=created,
                updated_at=created + timedelta(hours=i % 2),
                occurred_at=created,
                due_at=T0 + timedelta(hours=i % 3),
            )
        )
    with uow(write=True) as u:
        u.exceptions.add_many(rows)
    return rows


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("sort_by", SORT_FIELDS)
def test_every_sort_walks_every_row_once_in_order(uow, tied, sort_by, descending):
    expected = expected_order(tied, sort_by, descending)
    for limit in (1, 7, 40):
        assert walk(uow, sort_by, descending, limit) == expected


def test_walk_with_a_filter(uow, tied):
    flt = ExceptionFilter(status=Status.ASSIGNED)
    rows = [e for e in tied if e.status is Status.ASSIGNED]
    assert walk(uow, "created_at", True, 3, flt) == expected_order(rows, "created_at", True)
    assert walk(uow, "severity", False, 2, flt) == expected_order(rows, "severity", False)


def _inserter(uow, new_exception, added, start):
    def insert(page_number):
        batch = [new_exception(now=start + timedelta(seconds=page_number, microseconds=i)) for i in range(3)]
        added.extend(batch)
        with uow(write=True) as u:
            u.exceptions.add_many(batch)

    return insert


def test_newest_first_walk_never_shows_rows_added_meanwhile(uow, tied, new_exception):
    added: list[ReconException] = []
    seen = walk(
        uow, "created_at", True, 6, between_pages=_inserter(uow, new_exception, added, T0 + timedelta(days=1))
    )
    assert added
    assert seen == expected_order(tied, "created_at", True)


def test_oldest_first_walk_shows_rows_added_meanwhile_at_the_end_once(uow, tied, new_exception):
    added: list[ReconException] = []
    seen = walk(
        uow,
        "created_at",
        False,
        6,
        between_pages=_inserter(uow, new_exception, added, T0 + timedelta(days=1)),
    )
    assert len(seen) == len(set(seen)) == len(tied) + len(added)
    assert seen == expected_order(tied, "created_at", False) + expected_order(added, "created_at", False)


# -- lookups by id: the primary key, whatever PostgreSQL knows of the table ---------------------


def by_primary_key(engine, statement, parameters) -> None:
    plan = index_plan(engine, statement, parameters)
    if is_sqlite(engine):
        assert "(id=?)" in plan or "(tenant_id=? AND id=?)" in plan, plan
    else:
        # The table has had no ANALYZE (the case that matters: a new database, or a tenant newer
        # than the statistics): with `tenant_id = ?` as a lookup, PostgreSQL walked any index that
        # starts with the tenant and filtered every row of it by id.
        assert "pk_exceptions" in plan and "ix_exceptions" not in plan, plan


@pytest.mark.parametrize("locking", [False, True], ids=["read", "locking read"])
def test_gets_and_updates_by_id_go_by_primary_key_without_statistics(uow, new_exception, engine, locking):
    mine = [new_exception() for _ in range(40)]
    theirs = new_exception("tenant-b")
    with uow(write=True) as u:
        u.exceptions.add_many([*mine, theirs])
    with sent_to(engine, "exceptions") as sent, uow(write=locking) as u:
        assert u.exceptions.get("tenant-a", mine[3].id) == mine[3]
        assert u.exceptions.get("tenant-a", theirs.id) is None
        got = u.exceptions.get_many("tenant-a", [e.id for e in mine[:20]] + [theirs.id])
        assert set(got) == {e.id for e in mine[:20]}
    row_locks = locking and not is_sqlite(engine)  # SQLite has none
    assert len(sent) == 3 and all(("FOR UPDATE" in s) is row_locks for s, _ in sent)
    changed = [e.assign("bob", e.updated_at + timedelta(seconds=1)) for e in mine[:20]]
    with sent_to(engine, "exceptions") as updates, uow(write=True) as u:
        u.exceptions.update_many(changed)
    assert len(updates) == 1
    for statement, parameters in [*sent, *updates]:
        by_primary_key(engine, statement, parameters)
