"""Per-call state shared by the interceptors and servicers of one call, held in a context variable.

Each call runs in a context of its own from start to end (grpc.aio gives every call its own task, and
a call served on the pool runs there in a copy of that task's context: server/rpc/async_server.py),
so a ContextVar set by the outermost interceptor is visible to everything inside that call and to
nothing else.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

from server.domain.auth import Principal
from server.rpc.methods import MethodInfo


@dataclass
class CallState:
    request_id: str
    method: str
    info: MethodInfo | None
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    # Response headers the call will send; only the request-id interceptor sends them.
    response_headers: dict[str, str] = field(default_factory=dict)
    code: str = "OK"
    reason: str = ""


_current: contextvars.ContextVar[CallState | None] = contextvars.ContextVar("call_state", default=None)


def current() -> CallState:
    state = _current.get()
    if state is None:
        raise RuntimeError("no call in progress")
    return state


def current_or_none() -> CallState | None:
    return _current.get()


def enter(state: CallState) -> contextvars.Token:
    return _current.set(state)


def leave(token: contextvars.Token) -> None:
    _current.reset(token)


def principal() -> Principal:
    """The authenticated caller; the auth interceptor guarantees it for every non-public RPC."""
    found = current().principal
    if found is None:
        raise RuntimeError("RPC reached a handler without authentication")
    return found
