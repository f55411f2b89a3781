"""Per-call state shared by the interceptors and servicers of one call, held in a context variable.

Each call runs in a context of its own from start to end (grpc.aio gives every call its own task, and
a call served on the pool runs there in a copy of that task's context: server/rpc/async_server.py),
so a ContextVar set by the outermost interceptor is visible to everything inside that call and to
nothing else.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from server.contract.methods import MethodInfo
from server.domain.auth import Principal


@dataclass
class CallState:
    request_id: str
    method: str
    info: MethodInfo | None
    started: float = field(default_factory=time.perf_counter)
    # Set by the auth interceptor. A call nested in another call (a /v1/bulk sub-request, which only
    # the server makes, in process) starts authenticated (nested_calls_as).
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


# The caller of calls the server makes in process (a /v1/bulk sub-request): see nested_calls_as().
_nested_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "nested_principal", default=None
)


@contextlib.contextmanager
def nested_calls_as(principal: Principal) -> Iterator[None]:
    """Calls started in this block run as `principal`: their call state starts authenticated, so the
    auth interceptor checks only their scope. Only the server makes such calls (/v1/bulk runs its
    sub-requests in process), so no header of a sub-request can choose another caller."""
    token = _nested_principal.set(principal)
    try:
        yield
    finally:
        _nested_principal.reset(token)


def new_call(request_id: str, method: str, info: MethodInfo | None) -> CallState:
    """The state of a call starting now (the request-id interceptor, outermost, makes it)."""
    return CallState(request_id, method, info, principal=_nested_principal.get())


def principal() -> Principal:
    """The authenticated caller; the auth interceptor guarantees it for every non-public RPC."""
    found = current().principal
    if found is None:
        raise RuntimeError("RPC reached a handler without authentication")
    return found
