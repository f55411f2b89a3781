"""Per-tenant rate limits on the RPCs whose proto option `rate_limit` names a limit.

It runs after auth (it needs the tenant) and before idempotency: the counter has its own short
transaction, which on SQLite must not start while the call's write transaction holds the lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from server.contract.methods import MethodInfo
from server.rpc import call_state
from server.rpc.interceptors.base import Behavior, UnaryInterceptor


class RateLimitInterceptor(UnaryInterceptor):
    def __init__(self, methods: dict[str, MethodInfo], check: Callable[[str, str], None]) -> None:
        self._methods = methods
        self._check = check

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        info = self._methods.get(method)
        principal = call_state.current().principal
        if info is not None and info.rate_limit and principal is not None:
            self._check(principal.tenant_id, info.rate_limit)
        return proceed(request, context)
