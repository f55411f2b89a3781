"""Engines for the two supported databases: SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError

from server.storage.write_gate import GateTimeout, WriteGate

# Every statement waits this long for SQLite's single writer lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# libpq waits for a connection as long as TCP does: minutes when a network drops packets, with a
# pool thread held (and the caller waiting) all along. Unreachable is a 503 within this instead.
# `?connect_timeout=N` in DATABASE_URL wins.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5


def _json_default(value: Any) -> Any:
    # History `changes` may carry a Decimal or a datetime; store them as the API prints them.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for `sqlite:///path` (parent directory created) or `postgresql+psycopg://...`."""
    parsed = make_url(url)
    # Threads beyond pool_size + max_overflow wait for a connection (pool_timeout, 30 s).
    pool = {"pool_size": pool_size, "max_overflow": max(2, pool_size // 2)}
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool)
    given = "connect_timeout" in parsed.query
    return sa.create_engine(
        parsed,
        **pool,
        connect_args={} if given else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS},
        pool_pre_ping=True,  # a replica outlives database restarts and failovers
        pool_recycle=1800,
        json_serializer=_json_dumps,
    )


# Execution option of a connection that only reads, one statement at a time (see autocommit_reads).
AUTOCOMMIT_READS = "reconrouter_autocommit_reads"


def autocommit_reads(connection: Connection) -> Connection:
    """Runs each statement of this connection in its own implicit transaction: no BEGIN, no COMMIT.

    For read-only units of work, which are one statement (a get, a page, a token lookup) or a few
    that need no common snapshot. It takes two of the three database calls of a point read away
    (three round trips to one on PostgreSQL), and on SQLite each call releases and retakes the GIL,
    which with many busy threads costs more than the query (docs/benchmarks.md).

    On SQLite the begin hook below skips BEGIN (pysqlite already leaves the connection in autocommit
    and its commit() does nothing outside a transaction); SQLAlchemy's own AUTOCOMMIT level is not
    used there, because resetting it on check-in would switch pysqlite's implicit BEGIN back on.
    """
    if is_sqlite(connection):
        return connection.execution_options(**{AUTOCOMMIT_READS: True})
    return connection.execution_options(isolation_level="AUTOCOMMIT")


def count_statements(engine: Engine, observe: Callable[[], None]) -> None:
    """Calls `observe` once per statement sent to the database (metrics)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _on_statement(*_: Any) -> None:
        observe()


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def reads_never_wait(engine: Engine) -> bool:
    """True when a read can wait on nothing but local memory and disk: SQLite files here are in WAL
    mode, whose readers never wait for a writer. A PostgreSQL read is a network round trip."""
    return is_sqlite(engine)


def _use_wal(cursor: Any) -> None:
    """WAL: readers never block the writer nor the writer the readers. The mode is stored in the
    file, but switching a new file takes an exclusive lock and SQLite answers "database is locked"
    at once, without its busy timeout, to processes starting together (replicas, WORKERS, the
    migration): they retry for as long as the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


# Each SQLite engine's gate for its writers (see server/storage/write_gate.py).
_WRITE_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()


def write_gate(engine: Engine) -> WriteGate | None:
    """The SQLite engine's gate for its writers (metrics read it); None on PostgreSQL, whose
    writers lock rows, not the database."""
    return _WRITE_GATES.get(engine)


def _raw(connection: Any) -> Any:
    """The DBAPI connection behind a pool's proxy (or the DBAPI connection itself)."""
    return getattr(connection, "dbapi_connection", connection)


def _gate_writers(engine: Engine, gate: WriteGate) -> None:
    """The gate is let go once the DBAPI commit or rollback returned, whoever calls it (a Connection,
    or the pool resetting a connection on its return), and when a connection that still holds it is
    invalidated, closed or checked in."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            gate.release(_raw(dbapi_connection))

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            gate.release(_raw(dbapi_connection))

    # The pool calls the engine's dialect too (pool._dialect is this dialect object).
    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    def let_go(dbapi_connection: Any, *_: Any) -> None:
        gate.release(dbapi_connection)

    for name in ("checkin", "close", "invalidate", "soft_invalidate", "detach"):
        event.listen(engine, name, let_go)


def _sqlite_engine(url: str, pool: dict[str, Any]) -> Engine:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        # An in-memory database is private to one connection, so the pool would hand out empty
        # databases; tests use a temporary file instead (tests/support/databases.py).
        raise ValueError("use a file-backed SQLite URL such as sqlite:///var/reconrouter.db")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    # File databases get a QueuePool; pysqlite's same-thread check is off there (SQLAlchemy's default).
    engine = sa.create_engine(url, json_serializer=_json_dumps, **pool)
    gate = _WRITE_GATES[engine] = WriteGate()
    _gate_writers(engine, gate)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe "Serializable isolation / Savepoints / Transactional DDL": stop pysqlite
        # from issuing (or skipping) BEGIN itself; _on_begin below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # Durable across application crashes; only an OS crash may lose the last commits.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes must upgrade its lock, and in WAL mode
        # that upgrade fails at once ("database is locked") when another writer got in first:
        # busy_timeout does not apply. Taking the write lock up front makes writers queue on
        # busy_timeout instead. Readers keep a plain deferred BEGIN and never block anyone.
        # Writers of this process first queue on the gate (server/storage/write_gate.py), so that
        # BEGIN IMMEDIATE finds the lock free unless another process holds it.
        options = conn.get_execution_options()
        if options.get(AUTOCOMMIT_READS):
            return  # see autocommit_reads(): each statement is its own transaction
        if not options.get("write", False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection = _raw(conn.connection)
        try:
            gate.acquire(dbapi_connection, SQLITE_BUSY_TIMEOUT_MS / 1000)
        except GateTimeout as exc:
            # What SQLite's busy timeout answers after as long (a 503 to the caller).
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(str(exc))) from exc
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.release(dbapi_connection)
            raise

    return engine
