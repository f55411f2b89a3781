"""Units of work: commit, rollback, joining an outer one, savepoints, and SQLite's writer lock."""

from __future__ import annotations

import contextvars
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from server.storage.engine import make_engine
from server.storage.repositories import SqlTokenRepository
from server.storage.uow import SqlUnitOfWorkFactory
from tests.support.databases import fresh_sqlite_url


def add_token(u, name="t"):
    token_id = str(uuid.uuid4())
    u.tokens.add(token_id, "tenant-a", name, frozenset(), token_id.replace("-", "")[:64])
    return token_id


def token_count(uow) -> int:
    with uow(write=False, join=False) as u:
        return u.tokens.count()


class Boom(Exception):
    pass


def test_commit_on_normal_exit(uow):
    with uow(write=True) as u:
        add_token(u)
        assert u.connection.in_transaction()
    assert u.connection.closed
    assert token_count(uow) == 1


def test_rollback_on_exception(uow):
    with pytest.raises(Boom), uow(write=True) as u:
        add_token(u)
        raise Boom
    assert u.connection.closed
    assert token_count(uow) == 0


def test_units_of_work_join_the_outer_one(uow):
    assert uow.current() is None
    with uow.outer(write=True) as outer:
        assert uow.current() is outer
        with uow(write=True) as inner:
            assert inner.joined and inner.connection is outer.connection
            add_token(inner)
        assert not outer.connection.closed  # the joined block neither committed nor closed
        with uow(write=False) as reader:
            assert reader.tokens.count() == 1  # same transaction: sees its own writes
        assert token_count(uow) == 0  # not committed yet: invisible to other connections
    assert uow.current() is None
    assert token_count(uow) == 1


def test_outer_exception_rolls_back_joined_writes(uow):
    with pytest.raises(Boom), uow.outer(write=True):
        with uow(write=True) as inner:
            add_token(inner)
        raise Boom
    assert uow.current() is None  # reset even on error
    assert token_count(uow) == 0


def test_exception_in_joined_block_reaches_the_outer_one(uow):
    with pytest.raises(Boom), uow.outer(write=True), uow(write=True) as inner:
        add_token(inner)
        raise Boom
    assert token_count(uow) == 0


def test_nested_outer_is_a_savepoint(uow):
    with uow.outer(write=True) as outer:
        add_token(outer, "kept-1")
        with pytest.raises(Boom), uow.outer(write=True) as nested:
            assert uow.current() is nested and nested.connection is outer.connection
            with uow(write=True) as inner:
                add_token(inner, "undone")
            raise Boom
        assert uow.current() is outer
        with uow.outer(write=True) as nested, uow(write=True) as inner:
            add_token(inner, "kept-2")
    with uow(write=False) as u:
        names = sorted(u.connection.execute(sa.text("SELECT name FROM tokens")).scalars())
    assert names == ["kept-1", "kept-2"]


def test_join_false_opens_an_independent_unit_of_work(uow):
    with uow.outer(write=False) as outer:
        with uow(write=True, join=False) as own:
            assert not own.joined and own.connection is not outer.connection
            add_token(own)
        assert token_count(uow) == 1  # committed on its own


def test_a_write_cannot_join_a_read_only_outer(uow):
    with uow.outer(write=False), pytest.raises(RuntimeError):
        uow(write=True)


def test_another_thread_cannot_join(uow):
    errors = []
    with uow.outer(write=True):
        context = contextvars.copy_context()  # what a careless executor.submit wrapper would do

        def work():
            try:
                context.run(uow, write=False)
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert len(errors) == 1


def test_factories_do_not_join_each_other(uow, engine):
    other = SqlUnitOfWorkFactory(engine)
    with uow.outer(write=False):
        assert other.current() is None
        with other(write=False) as u:
            assert not u.joined


# -- SQLite's single writer ---------------------------------------------------------------------


@pytest.fixture
def sqlite_uow(tmp_path):
    from server.storage.migrate import upgrade

    url = fresh_sqlite_url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    yield SqlUnitOfWorkFactory(engine)
    engine.dispose()


def run_together(*jobs):
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job):
        barrier.wait()
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_sqlite_concurrent_read_modify_write_both_succeed(sqlite_uow):
    spans = []

    def writer():
        with sqlite_uow(write=True) as u:
            start = time.monotonic()
            seen = u.tokens.count()  # read, then write: the lock upgrade BEGIN IMMEDIATE avoids
            time.sleep(0.2)
            add_token(u, f"after-{seen}")
            spans.append((start, time.monotonic()))

    assert run_together(writer, writer) == []
    with sqlite_uow(write=False) as u:
        names = sorted(u.connection.execute(sa.text("SELECT name FROM tokens")).scalars())
    assert names == ["after-0", "after-1"]  # serialised: the second saw the first's row
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start  # the second transaction began only after the first committed


def test_sqlite_deferred_transactions_would_fail_on_upgrade(sqlite_uow):
    """Why writers use BEGIN IMMEDIATE: a deferred reader that later writes after another writer
    committed fails at once with "database is locked" (busy_timeout does not help). A connection
    with neither option gets the plain deferred BEGIN."""
    both_read = threading.Barrier(2)
    first_committed = threading.Event()

    def deferred():
        connection = sqlite_uow.engine.connect()
        return connection, SqlTokenRepository(connection)

    def first():
        connection, tokens = deferred()
        with connection, connection.begin():
            tokens.count()
            both_read.wait()
            tokens.add(str(uuid.uuid4()), "tenant-a", "first", frozenset(), "a" * 64)
        first_committed.set()

    def second():
        connection, tokens = deferred()
        with connection, connection.begin():
            tokens.count()
            both_read.wait()
            first_committed.wait()
            tokens.add(str(uuid.uuid4()), "tenant-a", "second", frozenset(), "b" * 64)

    errors = run_together(first, second)
    assert len(errors) == 1 and "database is locked" in str(errors[0])


def test_a_read_unit_of_work_sends_no_begin_and_sees_each_commit(uow, engine):
    """Reads run each statement on its own (storage/engine.py, autocommit_reads): no BEGIN/COMMIT
    round trips, no snapshot held between statements. Writes still BEGIN."""
    sent: list[tuple[object, str]] = []

    def record(conn, cursor, statement, *args):
        sent.append((conn, statement.split()[0].upper()))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with uow(write=False) as reader:
            assert reader.tokens.count() == 0
            with uow(write=True, join=False) as writer:
                add_token(writer)
            assert reader.tokens.count() == 1  # a snapshot would still say 0
            dbapi = reader.connection.connection.dbapi_connection
            if engine.dialect.name == "sqlite":
                assert dbapi.in_transaction is False
            else:
                assert dbapi.autocommit is True
            mine = [verb for conn, verb in sent if conn is reader.connection]
        assert mine == ["SELECT", "SELECT"]
        assert "BEGIN" in [verb for _, verb in sent] or engine.dialect.name != "sqlite"  # the writer's
        with uow(write=True) as writer:
            if engine.dialect.name == "sqlite":
                writer.tokens.count()
                assert writer.connection.connection.dbapi_connection.in_transaction is True
            else:
                assert writer.connection.connection.dbapi_connection.autocommit is False
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_sqlite_pragmas(sqlite_uow):
    with sqlite_uow(write=False) as u:
        pragma = lambda name: u.connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 10000
        assert pragma("synchronous") == 1  # NORMAL


def test_a_kept_read_connection_serves_this_threads_reads_only(uow, engine):
    """keep_read_connection (the event loop's, server/rpc/async_server.py): this thread's reads of
    their own reuse one connection and never touch the pool; writes, joined reads and other threads
    still check out; the block's end gives the connection back."""
    before = engine.pool.checkedout()
    with uow.keep_read_connection():
        assert engine.pool.checkedout() == before + 1
        with uow(write=False) as first:
            kept = first.connection
            assert first.tokens.count() == 0
        with uow(write=True, join=False) as writer:
            assert writer.connection is not kept
            add_token(writer)
        with uow(write=False) as second:
            assert second.connection is kept
            assert second.tokens.count() == 1  # no snapshot kept between reads either
            assert engine.pool.checkedout() == before + 1
        assert not kept.in_transaction()  # SQLAlchemy's autobegun bookkeeping ended with the block
        with uow.outer(write=True), uow(write=False) as joined:
            assert joined.connection is not kept
        elsewhere: list[object] = []

        def read_on_another_thread():
            with uow(write=False) as other:
                elsewhere.append(other.connection)

        worker = threading.Thread(target=read_on_another_thread)
        worker.start()
        worker.join()
        assert elsewhere and elsewhere[0] is not kept
        assert not kept.closed
    assert kept.closed
    assert engine.pool.checkedout() == before
