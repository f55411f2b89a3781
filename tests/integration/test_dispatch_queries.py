"""Issue 7's bound on a bulk dispatch to MANUAL: a fixed number of statements per batch, however
many items (an executemany counts once: one statement, its rows sent together), never a
transaction per item. Counted on the real databases, in process and through gRPC."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from reconrouter.exceptions.v1 import exceptions_pb2 as pb

from server.domain.auth import Principal
from server.domain.exceptions import NewException
from server.domain.routing import RuleInput
from server.storage.tables import exceptions as exceptions_table


@contextlib.contextmanager
def statements(engine: sa.Engine, *, whole: bool = False) -> Iterator[list[str]]:
    """The first word (whole: all of it) of every statement sent to the database while the block
    runs, but for those of the app's delivery workers (threads named delivery*), which poll the same
    engine meanwhile."""
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not threading.current_thread().name.startswith("delivery"):
            sent.append(" ".join(statement.split()) if whole else statement.split()[0].upper())

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def fresh_exceptions(app, principal: Principal, count: int) -> list[str]:
    items = [NewException(transaction_id=f"txn-{i}") for i in range(count)]
    return [e.id for e in app.exceptions.batch_create(principal, items)]


def dispatch_statements(app, count: int) -> list[str]:
    principal = Principal(f"tenant-{uuid.uuid4()}", "token-1", frozenset())
    ids = fresh_exceptions(app, principal, count)
    with statements(app.engine) as sent:
        outcome = app.dispatch.bulk_dispatch(principal, ids, "MANUAL", "ops")
    assert outcome.succeeded == ids and not outcome.failed
    return [verb for verb in sent if verb != "BEGIN"]  # SQLite's BEGIN IMMEDIATE: the one transaction


def test_a_manual_bulk_dispatch_costs_the_same_statements_for_1_10_or_100_items(app):
    one, ten, hundred = (dispatch_statements(app, n) for n in (1, 10, 100))
    assert one == ten == hundred
    # First the deliveries that exist for the same (exception, target, queue), without locks: when
    # every item was delivered there already, that is the answer (see the next test). Then MANUAL
    # completes in the call's transaction (API.md §7): read the exceptions and those deliveries
    # again, locking; insert the deliveries (DELIVERED) and their one attempt each; update the
    # exceptions (ticket); insert their DISPATCH history. 7 statements, each one executemany or
    # IN (...) for the whole batch.
    assert sorted(hundred) == ["INSERT", "INSERT", "INSERT", "SELECT", "SELECT", "SELECT", "UPDATE"]


def test_a_repeated_dispatch_is_answered_from_one_read_taking_no_lock(app):
    """Every item delivered there already: one read of the deliveries, no row lock, no write, no
    transaction (on SQLite no BEGIN IMMEDIATE: the write lock is not taken)."""
    principal = Principal(f"tenant-{uuid.uuid4()}", "token-1", frozenset())
    ids = fresh_exceptions(app, principal, 100)
    first = app.dispatch.bulk_dispatch(principal, ids, "MANUAL", "ops")
    with statements(app.engine, whole=True) as sent:
        again = app.dispatch.bulk_dispatch(principal, list(reversed(ids)), "MANUAL", "ops")
    assert again.succeeded == list(reversed(ids)) and not again.failed and first.succeeded == ids
    [(read)] = sent
    assert read.startswith("SELECT") and "FROM deliveries" in read and "FOR UPDATE" not in read
    # One more item never dispatched: the locked path, which dispatches it and answers the rest.
    [extra] = fresh_exceptions(app, principal, 1)
    with statements(app.engine, whole=True) as sent:
        mixed = app.dispatch.bulk_dispatch(principal, [*ids[:99], extra], "MANUAL", "ops")
    assert mixed.succeeded == [*ids[:99], extra]
    assert any(s.startswith("INSERT INTO deliveries") for s in sent)


def test_a_repeated_dispatch_is_not_held_up_by_a_writer(app):
    """Another transaction holds the exceptions' row locks (PostgreSQL) or the write lock (SQLite)
    for as long as this test wants: the repeat is answered meanwhile; a first dispatch waits."""
    principal = Principal(f"tenant-{uuid.uuid4()}", "token-1", frozenset())
    ids = fresh_exceptions(app, principal, 10)
    app.dispatch.bulk_dispatch(principal, ids, "MANUAL", "ops")
    [fresh] = fresh_exceptions(app, principal, 1)
    answered = threading.Event()
    first_done = threading.Event()
    with app.engine.connect() as holder:
        holder = holder.execution_options(write=True)  # SQLite: BEGIN IMMEDIATE
        with holder.begin():
            held = sa.update(exceptions_table).where(exceptions_table.c.id.in_([*ids, fresh]))
            holder.execute(held.values(reason="held"))

            def repeat() -> None:
                outcome = app.dispatch.bulk_dispatch(principal, ids, "MANUAL", "ops")
                if outcome.succeeded == ids:
                    answered.set()

            def first() -> None:
                app.dispatch.bulk_dispatch(principal, [fresh], "MANUAL", "ops")
                first_done.set()

            threads = [threading.Thread(target=repeat), threading.Thread(target=first)]
            for thread in threads:
                thread.start()
            assert answered.wait(10), "the repeated dispatch waited for the writer"
            assert not first_done.is_set()  # the first dispatch of `fresh` needs the lock: it waits
    for thread in threads:
        thread.join(30)
    assert first_done.is_set()


def test_the_same_bound_through_grpc_under_an_idempotency_key(app, stub, auth):
    def call(count: int) -> list[str]:
        created = stub.BatchCreateExceptions(
            pb.BatchCreateExceptionsRequest(
                exceptions=[pb.CreateExceptionRequest(transaction_id=f"t{i}") for i in range(count)]
            ),
            metadata=auth("admin"),
        )
        ids = [e.id for e in created.exceptions]
        key = (("idempotency-key", str(uuid.uuid4())),)
        with statements(app.engine) as sent:
            response = stub.BulkDispatchExceptions(
                pb.BulkDispatchExceptionsRequest(exception_ids=ids, target_system="MANUAL"),
                metadata=[*auth("admin"), *key],
            )
        assert list(response.succeeded) == ids
        return sent

    five, hundred = call(5), call(100)
    assert five == hundred and hundred  # counted on the server's threads, the same for 5 or 100


def routed_statements(app, count: int) -> list[str]:
    """A routed bulk dispatch (no target_system) of `count` fresh exceptions, the tenant's 11 rules
    already in this process's cache (a first call reads them once)."""
    principal = Principal(f"tenant-{uuid.uuid4()}", "token-1", frozenset())
    for priority in range(10):
        rule = RuleInput(f"never {priority}", priority, sources=(f"x{priority}",), target_system="JIRA")
        app.routing.create(principal, rule)
    severities = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    catch_all = RuleInput("all", 99, severities=severities, target_system="MANUAL", queue="q")
    app.routing.create(principal, catch_all)
    app.routing.list(principal)  # the cache now holds the tenant's rules
    ids = fresh_exceptions(app, principal, count)
    with statements(app.engine) as sent:
        outcome = app.dispatch.bulk_dispatch(principal, ids, "", "")
    assert outcome.succeeded == ids and not outcome.failed
    return [verb for verb in sent if verb != "BEGIN"]


def test_a_routed_bulk_dispatch_reads_the_rules_once_whatever_the_item_count(app):
    one, ten, hundred = (routed_statements(app, n) for n in (1, 10, 100))
    assert one == ten == hundred
    # The routing read (exceptions, the tenant's rules generation: one primary-key SELECT, the rules
    # themselves from the cache), then the MANUAL dispatch's 6 statements plus the ROUTE entries
    # (no overrides in these rules: no extra UPDATE). No statement per item, no rules query at all.
    assert sorted(hundred) == ["INSERT"] * 4 + ["SELECT"] * 4 + ["UPDATE"]
