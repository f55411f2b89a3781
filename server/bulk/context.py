"""The servicer context of one /v1/bulk sub-request: what grpc's own context does for a direct call,
minus the network.

It carries the sub-request's headers as invocation metadata and records what the interceptors send
(initial metadata, the aborting status). Who the caller is travels on the call state instead
(call_state.nested_calls_as, entered by the runner), so a sub-request can neither bring another
token nor skip its RPC's scope check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.rpc.recording_context import Metadatum, RecordingContext


class SubRequestContext(RecordingContext):
    def __init__(
        self,
        metadata: Sequence[tuple[str, str]],
        deadline: float | None,
        peer: str = "",
    ) -> None:
        super().__init__()
        self._metadata = tuple(Metadatum(k, v) for k, v in metadata)
        self._deadline = deadline  # time.monotonic() value, None = no deadline
        self._peer = peer

    def invocation_metadata(self):
        return self._metadata

    # None without a deadline, as grpc documents for ServicerContext.time_remaining (its stub says
    # float); server/bulk/servicer.py relies on it.
    def time_remaining(self) -> float | None:  # type: ignore[override]
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return self._peer
