"""The servicer context of one /v1/bulk sub-request: what grpc's own context does for a direct call,
minus the network.

It carries the sub-request's headers as invocation metadata, records what the interceptors send
(initial metadata, the aborting status), and carries the outer call's principal: the auth
interceptor takes the caller from here instead of from an `authorization` header, so a sub-request
can neither bring another token nor skip its RPC's scope check.
"""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Sequence

import grpc

from server.domain.auth import Principal

Metadatum = namedtuple("Metadatum", ("key", "value"))


class SubRequestAborted(Exception):
    """Raised by abort()/abort_with_status(), like grpc's own context raises to end the handler."""


class SubRequestContext(grpc.ServicerContext):
    def __init__(
        self,
        metadata: Sequence[tuple[str, str]],
        principal: Principal,
        deadline: float | None,
        peer: str = "",
    ) -> None:
        self._metadata = tuple(Metadatum(k, v) for k, v in metadata)
        self.principal = principal
        self._deadline = deadline  # time.monotonic() value, None = no deadline
        self._peer = peer
        self.initial_metadata: tuple[tuple[str, str], ...] | None = None
        self.trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()
        self.code: grpc.StatusCode | None = None
        self.details: str = ""

    # -- what the interceptors and servicers use ------------------------------------------------

    def invocation_metadata(self):
        return self._metadata

    def send_initial_metadata(self, initial_metadata) -> None:
        if self.initial_metadata is not None:
            raise RuntimeError("initial metadata sent twice")  # grpc refuses this too
        self.initial_metadata = tuple(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata) -> None:
        self.trailing_metadata = tuple(trailing_metadata)

    def abort(self, code: grpc.StatusCode, details: str):
        self.code, self.details = code, details
        raise SubRequestAborted(details)

    def abort_with_status(self, status: grpc.Status):
        self.set_trailing_metadata(status.trailing_metadata or ())
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return self._peer

    # -- the rest of grpc.ServicerContext: nothing here uses them, but the interface is whole ---

    def cancel(self) -> None:
        raise SubRequestAborted("cancelled")

    def add_callback(self, callback) -> bool:
        return False  # like a finished call: the callback will not run

    def peer_identities(self):
        return None

    def peer_identity_key(self):
        return None

    def auth_context(self):
        return {}

    def set_compression(self, compression) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass
