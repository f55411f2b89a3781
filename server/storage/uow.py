"""Units of work: a connection, a transaction (unless a read of its own), the repositories on it.

A read-only unit of work that joins nothing has no transaction of its own: each of its statements
sees the latest committed data (storage/engine.py, autocommit_reads). Reads that must agree with
each other, or with a write, belong in a write unit of work.

One transaction per call, owned by the outermost piece that needs it (docs ARCHITECTURE.md): the
idempotency interceptor opens `factory.outer(write=True)`, and every `factory(write=...)` made by the
handler while that block is active joins it, so the handler's writes and the stored response commit
together, or not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Self

from sqlalchemy.engine import Connection, Engine, RootTransaction

from server.storage.engine import autocommit_reads
from server.storage.repositories import (
    SqlDeliveryRepository,
    SqlExceptionRepository,
    SqlHistoryRepository,
    SqlRoutingRuleRepository,
    SqlSlaPolicyRepository,
    SqlTargetRepository,
    SqlTokenRepository,
)

if TYPE_CHECKING:
    from server.domain.ports import UnitOfWork, UnitOfWorkFactory


class SqlUnitOfWork:
    """Commits when the block ends normally, rolls back otherwise, always returns the connection.

    A joined unit of work (made while an outer one is active) shares the outer connection and
    transaction and neither commits nor rolls back: the outer one decides. An exception that
    leaves the joined block still reaches the outer one, which then rolls back; code that catches
    it in between and carries on keeps the joined block's writes (use a nested `outer()` to get a
    savepoint instead).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        write: bool,
        parent: SqlUnitOfWork | None = None,
        lazy: bool = False,
        kept: Connection | None = None,
    ) -> None:
        self._engine = engine
        self.write = write
        self._parent = parent
        # lazy: BEGIN at the first statement instead of at __enter__ (see SqlUnitOfWorkFactory.outer).
        self._lazy = lazy
        # A read of its own on a thread that keeps a connection (SqlUnitOfWorkFactory.keep_read_connection).
        self._kept = kept if self.autocommit else None
        self._transaction: RootTransaction | None = None
        self._thread = threading.get_ident()
        # Set by __enter__.
        self.connection: Connection
        self.exceptions: SqlExceptionRepository
        self.history: SqlHistoryRepository
        self.deliveries: SqlDeliveryRepository
        self.targets: SqlTargetRepository
        self.tokens: SqlTokenRepository
        self.routing: SqlRoutingRuleRepository
        self.sla: SqlSlaPolicyRepository

    @property
    def joined(self) -> bool:
        return self._parent is not None

    @property
    def autocommit(self) -> bool:
        """A read of its own: no transaction, each statement on its own (see autocommit_reads)."""
        return not self.write and not self._lazy and self._parent is None

    def __enter__(self) -> Self:
        if self._parent is not None:
            self.connection = self._parent.connection
        elif self._kept is not None:
            self.connection = self._kept
        elif self.autocommit:
            # A read on its own: no transaction to begin or commit (see autocommit_reads).
            self.connection = autocommit_reads(self._engine.connect())
        else:
            # `write` reaches the engine's "begin" hook: BEGIN IMMEDIATE on SQLite.
            self.connection = self._engine.connect().execution_options(write=self.write)
            if not self._lazy:
                try:
                    self._transaction = self.connection.begin()
                except BaseException:
                    self.connection.close()
                    raise
        lock_rows = self.write
        # Only a read of its own, outside any transaction, bypasses SQLAlchemy's execution path: a
        # read inside one must go through it (on SQLite, that is what sends the BEGIN).
        direct = self.autocommit
        self.exceptions = SqlExceptionRepository(self.connection, lock_rows=lock_rows, direct_reads=direct)
        self.history = SqlHistoryRepository(self.connection)
        self.deliveries = SqlDeliveryRepository(self.connection, lock_rows=lock_rows)
        self.targets = SqlTargetRepository(self.connection)
        self.tokens = SqlTokenRepository(self.connection, direct_reads=direct)
        self.routing = SqlRoutingRuleRepository(self.connection)
        self.sla = SqlSlaPolicyRepository(self.connection)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._parent is not None:
            return  # joined: the outer unit of work commits or rolls back
        if self._kept is not None:
            # Nothing to end at the database (autocommit_reads); end SQLAlchemy's bookkeeping of the
            # transaction it began at a first Core statement, and keep the connection for the thread.
            if self.connection.in_transaction():
                if exc_type is None:
                    self.connection.commit()
                else:
                    self.connection.rollback()
            return
        try:
            # The connection's transaction: begun in __enter__, or at the first statement when lazy
            # (none at all if nothing ran; then these do nothing).
            if exc_type is None:
                self.connection.commit()
            else:
                self.connection.rollback()
        finally:
            self.connection.close()


class SqlUnitOfWorkFactory:
    """Implements server.domain.ports.UnitOfWorkFactory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Per factory, so a unit of work never joins one that belongs to another engine.
        self._current: ContextVar[SqlUnitOfWork | None] = ContextVar(f"uow_{id(self)}", default=None)
        self._kept = threading.local()

    def __call__(self, *, write: bool, join: bool = True) -> SqlUnitOfWork:
        """A unit of work; it joins the active `outer()` block unless join=False (for storage-internal
        work that must commit on its own, such as claiming an idempotency key)."""
        outer = self._current.get() if join else None
        if outer is None:
            return SqlUnitOfWork(self.engine, write=write, kept=getattr(self._kept, "connection", None))
        _check_joinable(outer, write)
        return SqlUnitOfWork(self.engine, write=write, parent=outer)

    @contextmanager
    def keep_read_connection(self) -> Iterator[None]:
        """Within the block, this thread's reads of their own all use one connection of their own
        instead of checking one out of the pool and back in. For the thread that must never wait
        for the pool: the event loop serving reads inline (server/rpc/async_server.py)."""
        connection = autocommit_reads(self.engine.connect())
        self._kept.connection = connection
        try:
            yield
        finally:
            self._kept.connection = None
            connection.close()

    def current(self) -> SqlUnitOfWork | None:
        """The active outer unit of work of this context, if any."""
        return self._current.get()

    def in_transaction(self) -> bool:
        """True once the active outer unit of work has begun its transaction (see outer())."""
        outer = self._current.get()
        return outer is not None and outer.connection.in_transaction()

    @contextmanager
    def outer(self, *, write: bool = True) -> Iterator[SqlUnitOfWork]:
        """Opens a unit of work that units of work made inside the block join.

        Nested inside another outer block it runs in a SAVEPOINT of that transaction, so an inner
        owner (say, one sub-request of /v1/bulk) can fail and roll back its own writes without
        undoing its siblings'; the outermost block alone commits.

        The outermost block begins its transaction at its first statement, not on entry: until the
        handler first uses it, it holds no lock (on SQLite, not the write lock), so the handler can
        commit independent work first (join=False) and make external calls holding nothing; dispatch
        does exactly that (docs/targets.md, "Transactions").
        """
        parent = self._current.get()
        if parent is None:
            with SqlUnitOfWork(self.engine, write=write, lazy=True) as uow:
                token = self._current.set(uow)
                try:
                    yield uow
                finally:
                    self._current.reset(token)
            return
        _check_joinable(parent, write)
        uow = SqlUnitOfWork(self.engine, write=write, parent=parent)
        with uow, uow.connection.begin_nested():
            token = self._current.set(uow)
            try:
                yield uow
            finally:
                self._current.reset(token)


def _check_joinable(outer: SqlUnitOfWork, write: bool) -> None:
    # A connection is not thread-safe; a worker thread that copied the context must open its own.
    if outer._thread != threading.get_ident():
        raise RuntimeError("a unit of work cannot join an outer one opened by another thread")
    # On SQLite a read transaction cannot safely become a write one (see engine.py).
    if write and not outer.write:
        raise RuntimeError("a write unit of work cannot join a read-only outer one")


# Conformance: mypy checks the adapter against the protocol it implements (nothing runs).
if TYPE_CHECKING:

    def _uow_conforms(uow: SqlUnitOfWork) -> UnitOfWork:
        return uow

    def _factory_conforms(factory: SqlUnitOfWorkFactory) -> UnitOfWorkFactory:
        return factory
