"""A servicer context that records what a call sends instead of sending it.

The interceptors and servicers are synchronous and talk to grpc.ServicerContext. Two kinds of call
run them without grpc's own synchronous context: a /v1/bulk sub-request (no network at all) and a
wire call served by the asyncio server (whose context's sending methods are coroutines). Both give
the behaviour a RecordingContext and deliver what it recorded afterwards: the initial metadata,
the trailing metadata and, when the call aborted, its status.
"""

from __future__ import annotations

from collections import namedtuple
from typing import NoReturn

import grpc

Metadatum = namedtuple("Metadatum", ("key", "value"))


class CallAborted(Exception):
    """Raised by abort()/abort_with_status(), like grpc's own context raises to end the handler."""


class RecordingContext(grpc.ServicerContext):
    """Subclasses say where the call comes from: invocation_metadata, time_remaining, is_active, peer."""

    def __init__(self) -> None:
        self.initial_metadata: tuple[tuple[str, str], ...] | None = None
        # An attribute where grpc.ServicerContext has an (experimental) trailing_metadata() method:
        # what was recorded is read here (server/bulk/results.py, the tests), and nothing calls the
        # method on these contexts.
        self.trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()  # type: ignore[assignment]
        self.code: grpc.StatusCode | None = None
        self.details: str = ""

    def send_initial_metadata(self, initial_metadata) -> None:
        if self.initial_metadata is not None:
            raise RuntimeError("initial metadata sent twice")  # grpc refuses this too
        self.initial_metadata = tuple(initial_metadata)

    def set_trailing_metadata(self, trailing_metadata) -> None:
        self.trailing_metadata = tuple(trailing_metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.code, self.details = code, details
        raise CallAborted(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self.set_trailing_metadata(status.trailing_metadata or ())
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    # -- the rest of grpc.ServicerContext: nothing here uses them, but the interface is whole ---

    def cancel(self) -> NoReturn:
        self.code, self.details = grpc.StatusCode.CANCELLED, "cancelled"
        raise CallAborted("cancelled")

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
