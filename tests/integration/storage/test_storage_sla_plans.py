"""The SLA queries use their indexes (API.md §8: fast at a million rows): the overdue list, the
due-date order and the escalation scheduler's seek each walk one index range in order, with no sort
of the tenant's rows and no table scan. Checked from the planners' own words (EXPLAIN) for the SQL
the repositories actually send; PostgreSQL is told to avoid sequential scans, since on a small
table it would rightly prefer one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from server.domain.exceptions import Severity, Status
from server.domain.paging import ExceptionFilter, ExceptionQuery, PageAfter
from server.storage.engine import is_sqlite

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def plan_of(engine: Engine, uow, run: Callable[[object], object]) -> str:
    """The plan of the SELECT on exceptions that run(unit of work) sends."""
    sent: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM exceptions" in statement:
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with uow(write=False) as u:
            run(u)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(sent) == 1, sent
    statement, parameters = sent[0]
    with engine.connect() as conn:
        if is_sqlite(engine):
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            return "\n".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
        return "\n".join(r[0] for r in rows)


@pytest.fixture
def filled(uow, new_exception):
    rows = [
        new_exception(
            severity=Severity(i % 4 + 1),
            status=Status.RESOLVED if i % 3 == 0 else Status.OPEN,
            due_at=NOW + timedelta(hours=i - 20),
        )
        for i in range(40)
    ]
    with uow(write=True) as u:
        u.exceptions.add_many(rows)
    return rows


def assert_walks(plan: str, index: str, engine: Engine) -> None:
    assert index in plan, plan
    if is_sqlite(engine):
        assert "TEMP B-TREE" not in plan, plan  # no sort
        assert "SCAN exceptions" not in plan or f"USING INDEX {index}" in plan, plan
    else:
        assert "Sort" not in plan and "Seq Scan" not in plan, plan


@pytest.mark.parametrize("descending", [False, True])
def test_the_overdue_list_walks_the_partial_index(engine, uow, filled, descending):
    after = PageAfter((NOW - timedelta(hours=5)).isoformat(), filled[0].id) if descending else None
    query = ExceptionQuery(ExceptionFilter(overdue=True), "due_at", descending, 20, after, now=NOW)
    plan = plan_of(engine, uow, lambda u: u.exceptions.list("tenant-a", query))
    assert_walks(plan, "ix_exceptions_tenant_open_due", engine)


def test_the_due_date_order_walks_its_index(engine, uow, filled):
    query = ExceptionQuery(ExceptionFilter(), "due_at", False, 20)
    plan = plan_of(engine, uow, lambda u: u.exceptions.list("tenant-a", query))
    assert_walks(plan, "ix_exceptions_tenant_due", engine)


def test_the_escalation_seek_uses_its_partial_index(engine, uow, filled):
    plan = plan_of(engine, uow, lambda u: u.exceptions.overdue_unescalated("tenant-a", NOW, 100))
    assert_walks(plan, "ix_exceptions_tenant_escalation", engine)


def test_the_escalation_backlog_count_uses_the_same_partial_index(engine, uow, filled):
    # The metric's count is bounded and seeks the index range: no scan of the tenant's rows.
    plan = plan_of(engine, uow, lambda u: u.exceptions.count_overdue_unescalated("tenant-a", NOW, 10_000))
    assert_walks(plan, "ix_exceptions_tenant_escalation", engine)
    with uow(write=False) as u:
        overdue = [e for e in filled if e.status is not Status.RESOLVED and e.due_at < NOW]
        assert u.exceptions.count_overdue_unescalated("tenant-a", NOW, 10_000) == len(overdue) > 3
        assert u.exceptions.count_overdue_unescalated("tenant-a", NOW, 3) == 3
        assert u.exceptions.count_overdue_unescalated("tenant-b", NOW, 10_000) == 0
