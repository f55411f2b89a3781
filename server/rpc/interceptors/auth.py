"""Bearer-token authentication and the per-RPC scope check (scopes come from the proto options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from server.contract.http import AUTHORIZATION
from server.contract.methods import MethodInfo
from server.domain.auth import Principal
from server.domain.errors import PermissionDenied, Unauthenticated
from server.rpc import call_state
from server.rpc.interceptors.base import Behavior, UnaryInterceptor
from server.rpc.metadata import metadata_value


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthenticated("missing Authorization: Bearer <token>")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be: Bearer <token>")
    return token.strip()


class AuthInterceptor(UnaryInterceptor):
    def __init__(self, methods: dict[str, MethodInfo], authenticate: Callable[[str], Principal]) -> None:
        self._methods = methods
        self._authenticate = authenticate

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        info = self._methods.get(method)
        if info is None or info.public:
            # Public: the REST health check, plus grpc.health.v1 (not part of this table).
            return proceed(request, context)
        state = call_state.current()
        # A call the server makes in process (a /v1/bulk sub-request) starts with its caller on its
        # call state (call_state.nested_calls_as): whatever headers it carries, it runs as that one.
        principal = state.principal or self._authenticate(
            bearer_token(metadata_value(context, AUTHORIZATION))
        )
        state.principal = principal
        # token_required RPCs (POST /v1/bulk) have no scope of their own: they check each piece.
        if info.required_scope and not principal.has_scope(info.required_scope):
            raise PermissionDenied(f"the token lacks the {info.required_scope} scope")
        return proceed(request, context)
