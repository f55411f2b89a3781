"""Innermost interceptor: exactly-once mutating calls under an idempotency key (API.md §5).

For a mutating RPC that carries a key: claim the key (its own short transaction), run the handler
inside the call's transaction, store the response in that same transaction, commit once. A repeat
of a completed call is answered from the stored response without running the handler; a failed
call releases its key. Reads (GET routes) and public RPCs ignore keys altogether.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.message import Message

from server.contract.http import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_ALTERNATIVE, IDEMPOTENCY_REPLAYED
from server.contract.methods import MethodInfo
from server.domain.idempotency import Claim, KeyScope, KeyStore, StoredResponse, fingerprint, parse_key
from server.rpc import call_state
from server.rpc.interceptors.base import Behavior, UnaryInterceptor
from server.rpc.metadata import metadata_value
from server.services.clock import utc_now

log = logging.getLogger("reconrouter.idempotency")


class IdempotencyInterceptor(UnaryInterceptor):
    def __init__(
        self,
        methods: dict[str, MethodInfo],
        store: KeyStore,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._methods = methods
        self._store = store
        self._clock = clock

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        info = self._methods.get(method)
        if info is None or not info.mutating:
            return proceed(request, context)  # reads ignore keys
        state = call_state.current()
        if state.principal is None:
            return proceed(request, context)  # public RPCs: no tenant to scope a key by
        key = parse_key(
            metadata_value(context, IDEMPOTENCY_KEY),
            metadata_value(context, IDEMPOTENCY_KEY_ALTERNATIVE),
            required=info.idempotency_key_required,
        )
        if key is None:
            return proceed(request, context)  # no key, no protection, no hidden deduplication

        scope = KeyScope(state.principal.tenant_id, method, key)
        # Deterministic serialization: one message, one byte string, whatever JSON spelling it came in.
        digest = fingerprint(request.SerializeToString(deterministic=True))
        outcome = self._store.claim(scope, digest, self._clock())
        headers = state.response_headers
        if isinstance(outcome, StoredResponse):
            response = _replay(info, outcome)
            headers[IDEMPOTENCY_REPLAYED] = "true"
            return response
        response = self._run_once(info, outcome, request, context, proceed)
        headers[IDEMPOTENCY_REPLAYED] = "false"
        return response

    def _run_once(
        self, info: MethodInfo, claim: Claim, request: Any, context: grpc.ServicerContext, proceed: Behavior
    ) -> Any:
        try:
            with self._store.transaction() as tx:
                response: Message = proceed(request, context)
                stored = _without_shown_once(info, response)
                self._store.complete(
                    tx, claim, stored.SerializeToString(), response.DESCRIPTOR.full_name, self._clock()
                )
        except BaseException:
            # The handler's writes rolled back with the transaction; free the key so that a
            # corrected retry runs (only successful responses are kept).
            self._release(claim)
            raise
        return response

    def _release(self, claim: Claim) -> None:
        try:
            self._store.release(claim)
        except Exception:
            # Not fatal: the claim frees itself after the lock timeout. The key is the caller's
            # value, not a secret, but the RPC is enough to find the row.
            log.warning("could not release an idempotency key", extra={"rpc": claim.scope.rpc}, exc_info=True)


def _replay(info: MethodInfo, stored: StoredResponse) -> Message:
    expected = info.response_type.DESCRIPTOR.full_name
    if stored.response_type != expected:
        # Only possible if the contract changed a response type under a live key.
        raise RuntimeError(f"stored {stored.response_type} cannot answer {info.full_name} ({expected})")
    return info.response_type.FromString(stored.response)


def _without_shown_once(info: MethodInfo, response: Message) -> Message:
    """What the service shows in an answer once (fields marked shown_once, e.g. a generated webhook
    secret, API.md §9) is left out of the stored copy replays answer from: never kept in clear."""
    shown = [name for name in info.shown_once_fields if response.HasField(name)]
    if not shown:
        return response
    copy = type(response)()
    copy.CopyFrom(response)
    for name in shown:
        copy.ClearField(name)
    return copy
