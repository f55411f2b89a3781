"""One process's SQLite writers take turns in arrival order instead of racing on SQLite's busy handler.

SQLite has one writer lock per database file. A writer that finds it taken does not queue: SQLite's
busy handler sleeps and tries again, in steps that grow to 100 ms, for up to busy_timeout. With eight
writers in one process each holding the lock for a few milliseconds, a writer that keeps waking up
just after another one took the lock can sleep through dozens of free moments: the bench measured
BEGIN IMMEDIATE waiting p50 1 ms, p90 79 ms, p99 430 ms, max 1,036 ms for 8 concurrent dispatch
calls whose own work takes ~15 ms (docs/benchmarks.md, issue 19). That is the dispatch route's tail.

Here the writers of one engine wait on an in-process FIFO first: a thread that gets the gate is
handed it directly by the previous holder when that one commits or rolls back, with no sleep in
between, and only then sends BEGIN IMMEDIATE, which finds the lock free unless another process
holds it (replicas, WORKERS, `python -m server deliver`): across processes SQLite's busy handler
still decides, as before.

The gate is held from BEGIN IMMEDIATE until the DBAPI connection's commit or rollback returns, and
is let go too when the connection is closed, invalidated or checked in while still holding it, so
no path leaves it taken. A thread that already holds the gate through one connection and begins a
write on another (which could only wait on SQLite's lock held by itself) does not wait here: it goes
straight to BEGIN IMMEDIATE and its busy timeout, exactly as without the gate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

Observer = Callable[[float], None]


class GateTimeout(TimeoutError):
    """This process's other writers held the gate for the whole wait."""


class WriteGate:
    """A FIFO lock owned by one DBAPI connection at a time (not by a thread: a pool may roll a
    connection back on another thread, say when a garbage-collected connection is returned)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None  # id() of the DBAPI connection holding the gate
        self._owner_thread: int | None = None
        self._waiters: deque[threading.Lock] = deque()
        # Set by the composition root when metrics are on: seconds each writer waited here.
        self.observe: Observer | None = None

    @property
    def waiting(self) -> int:
        """Writers queued for the gate now (a metric)."""
        return len(self._waiters)

    def acquire(self, connection: Any, timeout: float) -> bool:
        """Waits up to `timeout` s for the gate on behalf of `connection` (a DBAPI connection): True
        once taken; False when this thread already holds it through another connection (not taken:
        see the module's docstring); GateTimeout after `timeout`."""
        started = time.perf_counter()
        taken = self._wait(connection, timeout)
        if taken is None:
            return False
        if self.observe is not None:  # outside the mutex: the next writer is not kept waiting for it
            self.observe(time.perf_counter() - started)
        if not taken:
            raise GateTimeout(f"other writers of this process held the database for {timeout:g} s")
        return True

    def _wait(self, connection: Any, timeout: float) -> bool | None:
        """True: taken; False: timed out; None: this thread already holds it (see acquire)."""
        with self._mutex:
            if self._owner is None:
                self._take(connection)
                return True
            if self._owner_thread == threading.get_ident():
                return None  # see the module's docstring: this thread waits on SQLite itself
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=timeout):
            with self._mutex:  # handed over by release(): the gate is already ours
                self._take(connection)
            return True
        with self._mutex:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                # release() handed the gate over just as the wait timed out: it is ours.
                self._take(connection)
                return True
        return False

    def release(self, connection: Any) -> None:
        """Lets the gate go if `connection` holds it (any other connection: nothing happens)."""
        with self._mutex:
            if connection is None or self._owner != id(connection):
                return
            self._owner = None
            self._owner_thread = None
            if self._waiters:
                # Handed over: the gate stays taken, so no newcomer can slip in before the waiter.
                self._owner = -1
                self._waiters.popleft().release()

    def _take(self, connection: Any) -> None:
        self._owner = id(connection)
        self._owner_thread = threading.get_ident()
