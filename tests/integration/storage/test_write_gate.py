"""SQLite writers of one process queue on the engine's write gate (server/storage/write_gate.py):
first come, first served, and no way out of a transaction leaves the gate taken."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from server.storage import engine as engine_module
from server.storage.engine import make_engine, write_gate
from server.storage.write_gate import GateTimeout, WriteGate


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}", pool_size=10)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE log (n INTEGER)")
    yield engine
    engine.dispose()


def writer(engine: Engine) -> sa.Connection:
    return engine.connect().execution_options(write=True)


def wait_until(predicate, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_writers_of_one_process_begin_in_the_order_they_asked(engine: Engine) -> None:
    gate = write_gate(engine)
    assert gate is not None
    order: list[int] = []
    holder = writer(engine)
    holder.begin()  # the first writer holds the database while the others line up
    holder.exec_driver_sql("INSERT INTO log VALUES (0)")

    def write(n: int) -> None:
        with writer(engine) as conn, conn.begin():
            order.append(n)
            conn.exec_driver_sql(f"INSERT INTO log VALUES ({n})")

    threads = []
    for n in range(1, 7):
        thread = threading.Thread(target=write, args=(n,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: gate.waiting == n)  # queued behind the ones before it
    holder.commit()
    holder.close()
    for thread in threads:
        thread.join(timeout=20)
    # SQLite's busy handler alone wakes the latest arrivals first (their sleeps are the shortest).
    assert order == [1, 2, 3, 4, 5, 6]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM log").scalar() == 7
    assert gate.waiting == 0


@pytest.mark.parametrize("ending", ["commit", "rollback", "error", "close", "invalidate"])
def test_every_end_of_a_write_lets_the_gate_go(engine: Engine, ending: str) -> None:
    gate = write_gate(engine)
    assert gate is not None
    conn = writer(engine)
    conn.begin()
    conn.exec_driver_sql("INSERT INTO log VALUES (1)")
    if ending == "commit":
        conn.commit()
    elif ending == "rollback":
        conn.rollback()
    elif ending == "error":
        with pytest.raises(OperationalError):
            conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")
        conn.rollback()
    elif ending == "invalidate":
        conn.invalidate()
    conn.close()  # "close": returned to the pool with its transaction open; the pool rolls it back
    # Another thread's writer gets in at once (a taken gate would make it wait its busy timeout).
    got_in = threading.Event()

    def other() -> None:
        with writer(engine) as other_conn, other_conn.begin():
            other_conn.exec_driver_sql("INSERT INTO log VALUES (2)")
            got_in.set()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=5)
    assert got_in.is_set(), f"the gate stayed taken after {ending}"


def test_a_begin_that_fails_lets_the_gate_go(engine: Engine) -> None:
    gate = write_gate(engine)
    assert gate is not None
    other_process = make_engine(str(engine.url), pool_size=1)  # another engine: another process's view
    try:
        holder = writer(other_process)
        holder.begin()
        holder.exec_driver_sql("INSERT INTO log VALUES (1)")
        with writer(engine) as conn:
            # SQLite's own wait, short for the test (on the DBAPI connection: no BEGIN for it).
            conn.connection.dbapi_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            with pytest.raises(OperationalError, match="locked"):
                conn.begin()
            conn.invalidate()  # not back into the pool with that timeout
        holder.rollback()
        holder.close()
        assert gate.waiting == 0
        with writer(engine) as conn, conn.begin():  # the gate is free again
            conn.exec_driver_sql("INSERT INTO log VALUES (2)")
    finally:
        other_process.dispose()


def test_a_thread_holding_the_gate_does_not_wait_on_itself() -> None:
    gate = WriteGate()
    first, second = object(), object()
    assert gate.acquire(first, timeout=5)
    # The same thread, another connection: not taken, no wait (SQLite's busy timeout decides).
    assert gate.acquire(second, timeout=5) is False
    gate.release(second)  # not the holder: nothing happens
    taken = threading.Event()

    def other() -> None:
        if gate.acquire(object(), timeout=5):
            taken.set()

    thread = threading.Thread(target=other)
    thread.start()
    wait_until(lambda: gate.waiting == 1)
    assert not taken.is_set()
    gate.release(first)
    thread.join(timeout=5)
    assert taken.is_set()


def test_a_writer_queued_past_the_busy_timeout_gets_a_database_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holder = writer(engine)
    holder.begin()
    holder.exec_driver_sql("INSERT INTO log VALUES (1)")
    outcome: list[BaseException] = []

    def late() -> None:
        try:
            with writer(engine) as conn, conn.begin():
                conn.exec_driver_sql("INSERT INTO log VALUES (2)")
        except BaseException as exc:  # the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=late)
    thread.start()
    thread.join(timeout=10)
    holder.commit()
    holder.close()
    assert len(outcome) == 1 and isinstance(outcome[0], OperationalError)  # a 503 for the caller
    assert isinstance(outcome[0].__cause__, GateTimeout)
    assert write_gate(engine).waiting == 0  # type: ignore[union-attr]


def test_postgresql_engines_have_no_gate() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never connects
    try:
        assert write_gate(engine) is None
    finally:
        engine.dispose()
