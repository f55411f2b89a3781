"""Outermost interceptor: the request id, the call's response headers, one access-log line and the
call's metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from server.contract.http import HTTP_STATUS_TRAILER, REQUEST_ID
from server.contract.methods import MethodInfo
from server.rpc import call_state
from server.rpc.interceptors.base import Behavior, UnaryInterceptor
from server.rpc.metadata import metadata_value
from server.rpc.success_status import SUCCESS_STATUS

# Envoy echoes the caller's id to the caller as it is, so the server keeps the same one whenever it
# is printable (logs are JSON, so nothing in it can forge a line); only control characters or an
# absurd length get a fresh id.
_ACCEPTABLE_ID = re.compile(r"[\x20-\x7e]{1,1024}")
access_log = logging.getLogger("reconrouter.access")
# (rpc, code, reason, seconds, response headers) -> None; see server/metrics.py.
CallObserver = Callable[[str, str, str, float, dict[str, str]], None]


def request_id_from(context: grpc.ServicerContext) -> str:
    """The caller's id when it is sane (it is echoed into headers and logs), else a fresh one."""
    given = metadata_value(context, REQUEST_ID)
    return given if given and _ACCEPTABLE_ID.fullmatch(given) else str(uuid.uuid4())


class RequestIdInterceptor(UnaryInterceptor):
    def __init__(self, methods: dict[str, MethodInfo], observe: CallObserver | None = None) -> None:
        self._methods = methods
        self._observe = observe

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        state = call_state.new_call(request_id_from(context), method, self._methods.get(method))
        token = call_state.enter(state)
        try:
            response = proceed(request, context)
            status = SUCCESS_STATUS.get(method)
            if status is not None and (code := status(response)) != 200:
                state.response_headers[HTTP_STATUS_TRAILER] = str(code)
            # Initial metadata can be sent once per call: this is the one place that sends it.
            context.send_initial_metadata(((REQUEST_ID, state.request_id), *state.response_headers.items()))
            return response
        except BaseException:
            if state.code == "OK":
                # The caller went away (sending headers to a cancelled call raises), or an error
                # skipped the error interceptor (should not happen).
                state.code = "UNKNOWN" if context.is_active() else "CANCELLED"
            raise
        finally:
            seconds = time.perf_counter() - state.started
            # (grpc.health.v1, which each Envoy polls every second, does not pass here: no line.)
            if access_log.isEnabledFor(logging.INFO):
                self._log(state, seconds)
            if self._observe is not None:
                self._observe(state.method, state.code, state.reason, seconds, state.response_headers)
            call_state.leave(token)

    @staticmethod
    def _log(state: call_state.CallState, seconds: float) -> None:
        access_log.info(
            "call",
            extra={
                "rpc": state.method,
                "code": state.code,
                "reason": state.reason or None,
                "duration_ms": round(seconds * 1000, 2),
                "tenant": state.principal.tenant_id if state.principal else None,
            },
        )
