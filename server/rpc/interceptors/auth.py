"""Bearer-token authentication and the per-RPC scope check (scopes come from the proto options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from server.contract.http import AUTHORIZATION
from server.contract.methods import MethodInfo
from server.domain.auth import Principal
from server.domain.dispatch import TargetSystem
from server.domain.errors import PermissionDenied, Unauthenticated
from server.domain.hooks import SIGNATURE_HEADER
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


# (system, hook id, raw body, signature header) -> the hook's tenant, or Unauthenticated.
HookAuthenticator = Callable[[str, str, bytes, str | None], Principal]


def _no_hooks(system: str, hook_id: str, body: bytes, signature: str | None) -> Principal:
    raise Unauthenticated("hooks are not served here")


class AuthInterceptor(UnaryInterceptor):
    def __init__(
        self,
        methods: dict[str, MethodInfo],
        authenticate: Callable[[str], Principal],
        authenticate_hook: HookAuthenticator = _no_hooks,
    ) -> None:
        self._methods = methods
        self._authenticate = authenticate
        self._authenticate_hook = authenticate_hook

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        info = self._methods.get(method)
        if info is None or info.public:
            # Public: the REST health check, plus grpc.health.v1 (not part of this table).
            return proceed(request, context)
        state = call_state.current()
        if info.signed_hook:
            # (reconrouter.api.v1.signed_hook): no token; the signature over the raw body names the
            # tenant. Never on behalf of another call (a /v1/bulk sub-request).
            if state.principal is not None:
                raise PermissionDenied("a signed hook is posted by the system that signs it, not by a call")
            header = metadata_value(context, SIGNATURE_HEADER[TargetSystem(info.signed_hook)])
            body = request.body.data
            state.principal = self._authenticate_hook(info.signed_hook, request.hook_id, body, header)
            return proceed(request, context)
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
