"""The server's method handlers wrapped by its interceptors, resolved once at start-up: the wire
server serves them (server/rpc/server.py), and /v1/bulk calls them in process, so a sub-request
costs a function call, not a network round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]


@dataclass
class _CallDetails:
    """grpc.HandlerCallDetails of a resolution made once, ahead of any call (so no metadata)."""

    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...] = ()


class HandlerCollector:
    """Stands in for grpc.Server in the generated add_*_to_server functions and keeps what they
    register, so the in-process table holds exactly what the real server serves."""

    def __init__(self) -> None:
        self.registered: dict[str, grpc.RpcMethodHandler] = {}
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Any]) -> None:
        for name, handler in method_handlers.items():
            self.registered[f"/{service_name}/{name}"] = handler

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(generic_rpc_handlers)

    def find(self, method: str) -> grpc.RpcMethodHandler | None:
        if method in self.registered:
            return self.registered[method]
        for generic in self.generic:
            handler = generic.service(_CallDetails(method))
            if handler is not None:
                return handler
        return None


def intercepted(
    handler: grpc.RpcMethodHandler, interceptors: list[grpc.ServerInterceptor], method: str
) -> grpc.RpcMethodHandler | None:
    """The handler as grpc's server would run it: interceptors[0] outermost. Interceptors may
    change more than the behaviour (the request guard wraps the request deserializer)."""
    details = _CallDetails(method)
    for interceptor in reversed(interceptors):
        wrapped = interceptor.intercept_service(_continuation(handler), details)
        if wrapped is None:
            return None
        handler = wrapped
    return handler


def _continuation(
    handler: grpc.RpcMethodHandler,
) -> Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler]:
    """What an interceptor calls for the handler beneath it: always that handler."""
    return lambda _details: handler


def unary_behaviour(method: str, handler: grpc.RpcMethodHandler) -> Behavior:
    """The behaviour of a unary-unary handler; the contract has no streaming RPCs (refused at start)."""
    if handler.unary_unary is None:
        raise TypeError(f"{method} is not a unary RPC")
    return handler.unary_unary


def intercepted_handlers(
    register: Callable[[HandlerCollector], None],
    interceptors: list[grpc.ServerInterceptor],
    methods: Iterable[str],
) -> dict[str, grpc.RpcMethodHandler]:
    """full method name -> its handler as registered by `register`, wrapped by `interceptors`."""
    collector = HandlerCollector()
    register(collector)
    handlers = {}
    for method in methods:
        handler = collector.find(method)
        wrapped = None if handler is None else intercepted(handler, interceptors, method)
        if wrapped is not None:
            handlers[method] = wrapped
    return handlers


class InProcessHandlers:
    """full method name -> intercepted unary behaviour."""

    def __init__(self, behaviours: Mapping[str, Behavior] | None = None) -> None:
        self._behaviours = dict(behaviours or {})

    @classmethod
    def collect(
        cls,
        register: Callable[[HandlerCollector], None],
        interceptors: list[grpc.ServerInterceptor],
        methods: Iterable[str],
    ) -> InProcessHandlers:
        handlers = intercepted_handlers(register, interceptors, methods)
        return cls({method: unary_behaviour(method, handler) for method, handler in handlers.items()})

    def get(self, method: str) -> Behavior | None:
        return self._behaviours.get(method)
