"""A minimal grpc.ServicerContext stand-in for interceptor unit tests (no network)."""

from collections import namedtuple

import grpc

Metadatum = namedtuple("Metadatum", ("key", "value"))


class Aborted(Exception):
    def __init__(self, status):
        super().__init__(status.details)
        self.status = status


class FakeContext:
    def __init__(self, metadata=()):
        self._metadata = tuple(Metadatum(k, v) for k, v in metadata)
        self.initial_metadata = None
        self.cancelled = False

    def is_active(self):
        return not self.cancelled

    def invocation_metadata(self):
        return self._metadata

    def send_initial_metadata(self, metadata):
        if self.cancelled:
            raise ValueError("call is cancelled")  # what grpc does for a call the client dropped
        assert self.initial_metadata is None, "initial metadata sent twice"
        self.initial_metadata = dict(metadata)

    def abort_with_status(self, status):
        raise Aborted(status)


def run_through(interceptors, method, behavior, request=None, metadata=()):
    """Apply interceptors the way grpc does (first = outermost) and call the resulting behaviour."""
    handler = grpc.unary_unary_rpc_method_handler(behavior)
    details = namedtuple("Details", ("method", "invocation_metadata"))(method, ())
    for interceptor in reversed(interceptors):
        inner = handler

        def continuation(_details, inner=inner):
            return inner

        handler = interceptor.intercept_service(continuation, details)
    context = FakeContext(metadata)
    return context, lambda: handler.unary_unary(request, context)
