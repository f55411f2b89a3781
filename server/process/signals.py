"""SIGINT/SIGTERM as a stop request that no wait can miss and no handler can deadlock.

A Python signal handler runs in the main thread between two bytecodes, possibly while that thread
is inside `threading.Event.wait()` or `.set()` holding the event's (non-reentrant) lock: a handler
that calls `event.set()` then waits for itself forever. That was the hang of Ctrl-C in `make run`.
So the handler here only counts (an attribute store, no lock), and the main thread turns the count
into `stop.set()` while it polls with timed sleeps; other threads keep waiting on `stop` as before.

A second signal while stopping asks for the hard way: `hard_exit` (a worker: `os._exit`, which is
safe in a handler) or `hurry()` (the supervisor: SIGKILL its workers at the next poll).
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self, stop: threading.Event | None = None, *, hard_exit_code: int | None = None) -> None:
        """hard_exit_code: exit at once with this code on a second signal (a worker process)."""
        self.stop = stop or threading.Event()
        self.received = 0
        self._hard_exit_code = hard_exit_code

    def install(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received += 1
        if self.received >= 2 and self._hard_exit_code is not None:
            os._exit(self._hard_exit_code)

    def requested(self) -> bool:
        """True once a signal arrived or someone set `stop`; call from the main thread only."""
        if self.received and not self.stop.is_set():
            self.stop.set()
        return self.stop.is_set()

    def hurry(self) -> bool:
        """A second signal arrived: stop waiting for anyone's grace period."""
        return self.received >= 2

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is requested (True) or timeout passes (False). Main thread only."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.requested():
            if deadline is None:
                time.sleep(POLL_SECONDS)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(POLL_SECONDS, remaining))
        return True
