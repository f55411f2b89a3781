"""BulkService: POST /v1/bulk (BatchJson, a bare JSON array as google.api.HttpBody) and the same
operation typed for gRPC callers (Batch). Both hand the batch to the runner (server/bulk/)."""

from __future__ import annotations

import time

from google.api import httpbody_pb2
from google.protobuf import any_pb2, json_format
from reconrouter.bulk.v1 import bulk_pb2, bulk_pb2_grpc

from server.bulk.results import JSON, SubResult
from server.bulk.runner import BulkRunner, OuterCall
from server.domain.errors import FailedPrecondition
from server.rpc import call_state


class BulkServicer(bulk_pb2_grpc.BulkServiceServicer):
    def __init__(self, runner: BulkRunner) -> None:
        self.runner = runner

    def BatchJson(self, request, context):
        results = self.runner.run(request, _outer_call(context), compact=True)
        # The elements were encoded (and budgeted) as they were made; the array is their join.
        body = b"[" + b",".join(r.encode() for r in results) + b"]"
        del results
        self._check_size(len(body))
        return httpbody_pb2.HttpBody(content_type=JSON, data=body)

    def Batch(self, request, context):
        results = self.runner.run(request, _outer_call(context))
        response = bulk_pb2.BatchResponse(responses=[_typed(r) for r in results])
        self._check_size(response.ByteSize())
        return response

    def _check_size(self, size: int) -> None:
        # Headroom for the envelope gRPC adds; grpc itself would refuse with a bare RESOURCE_EXHAUSTED.
        limit = self.runner.limits.max_message_bytes - 64 * 1024
        if size > limit:
            raise FailedPrecondition(
                f"the answer ({size} bytes) is larger than the service sends ({limit} bytes); "
                "ask for smaller pages or fewer requests",
                reason="RESPONSE_TOO_LARGE",
            )


def _outer_call(context) -> OuterCall:
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return OuterCall(call_state.principal(), call_state.current().request_id, deadline)


def _typed(result: SubResult) -> bulk_pb2.SubResponse:
    typed = bulk_pb2.SubResponse(id=result.id, status=result.status, headers=result.headers)
    json_format.ParseDict(result.contents, typed.contents)
    if result.error is not None:
        typed.error.CopyFrom(result.error)
    elif result.response is not None:
        packed = any_pb2.Any()
        packed.Pack(result.response)
        typed.response.CopyFrom(packed)
    return typed
