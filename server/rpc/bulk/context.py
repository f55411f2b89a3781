"""The servicer context of one /v1/bulk sub-request: what grpc's own context does for a direct call,
minus the network.

It carries the sub-request's headers as invocation metadata, records what the interceptors send
(initial metadata, the aborting status), and carries the outer call's principal: the auth
interceptor takes the caller from here instead of from an `authorization` header, so a sub-request
can neither bring another token nor skip its RPC's scope check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.domain.auth import Principal
from server.rpc.recording_context import Metadatum, RecordingContext


class SubRequestContext(RecordingContext):
    def __init__(
        self,
        metadata: Sequence[tuple[str, str]],
        principal: Principal,
        deadline: float | None,
        peer: str = "",
    ) -> None:
        super().__init__()
        self._metadata = tuple(Metadatum(k, v) for k, v in metadata)
        self.principal = principal
        self._deadline = deadline  # time.monotonic() value, None = no deadline
        self._peer = peer

    def invocation_metadata(self):
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return self._peer
