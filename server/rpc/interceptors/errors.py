"""Turns every failure into a google.rpc.Status; nothing internal reaches the caller."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from server.domain.errors import DomainError
from server.rpc import call_state
from server.rpc.errors import to_grpc_status
from server.rpc.interceptors.base import Behavior, UnaryInterceptor

log = logging.getLogger("reconrouter.errors")

# Turns infrastructure failures (e.g. the database is down) into domain errors; None = unexpected.
Translator = Callable[[BaseException], DomainError | None]


class InternalError(DomainError):
    pass


class ErrorInterceptor(UnaryInterceptor):
    def __init__(self, translate: Translator) -> None:
        self._translate = translate

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        try:
            return proceed(request, context)
        except DomainError as error:
            self._abort(context, error)
        except Exception as exc:
            translated = self._translate(exc)
            if translated is None:
                # The stack trace goes to the log (with the request id), never to the caller.
                log.exception("unexpected error in %s", method)
                translated = InternalError("internal error; quote the request id when reporting it")
            else:
                log.warning("%s in %s: %s", translated.reason, method, type(exc).__name__)
            self._abort(context, translated)

    @staticmethod
    def _abort(context: grpc.ServicerContext, error: DomainError) -> None:
        state = call_state.current_or_none()
        if state is not None:
            state.code, state.reason = error.kind.value, error.reason
        context.abort_with_status(to_grpc_status(error, state.request_id if state else ""))
