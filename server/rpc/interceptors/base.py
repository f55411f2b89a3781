"""A server interceptor that wraps the unary behaviour, so it sees the request message and the
context (grpc's intercept_service alone sees neither)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]


class UnaryInterceptor(grpc.ServerInterceptor):
    def around(
        self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior
    ) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming RPCs (reflection) pass untouched
        method = handler_call_details.method
        inner = handler.unary_unary

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            return self.around(method, request, context, inner)

        return handler._replace(unary_unary=behavior)
