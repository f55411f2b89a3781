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
        # grpc asks for the handler on every call; the wrapped handler of a method is built once and
        # reused for as long as the handler beneath it is the same object (it is, per method).
        # Made lazily so subclasses need not call an __init__ of this class.
        wrapped_by_method = self.__dict__.setdefault("_wrapped", {})
        cached = wrapped_by_method.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        inner = handler.unary_unary

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            return self.around(method, request, context, inner)

        wrapped = self.adapt(handler._replace(unary_unary=behavior))
        wrapped_by_method[method] = (handler, wrapped)
        return wrapped

    def adapt(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """Hook for interceptors that change more of the handler than its behaviour (once per method)."""
        return handler
