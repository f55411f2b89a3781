"""BulkService: POST /v1/bulk (BatchJson, a bare JSON array as google.api.HttpBody) and the same
operation typed for gRPC callers (Batch). Both hand the batch to the runner (server/bulk/)."""

from __future__ import annotations

import json
import time

from google.api import httpbody_pb2
from google.protobuf import any_pb2, json_format
from reconrouter.bulk.v1 import bulk_pb2, bulk_pb2_grpc

from server.bulk.results import JSON, SubResult
from server.bulk.runner import BulkRunner, OuterCall
from server.rpc import call_state


class BulkServicer(bulk_pb2_grpc.BulkServiceServicer):
    def __init__(self, runner: BulkRunner) -> None:
        self.runner = runner

    def BatchJson(self, request, context):
        results = self.runner.run(request, _outer_call(context))
        body = json.dumps([r.rest_json() for r in results], separators=(",", ":"), ensure_ascii=False)
        return httpbody_pb2.HttpBody(content_type=JSON, data=body.encode("utf-8"))

    def Batch(self, request, context):
        results = self.runner.run(request, _outer_call(context))
        return bulk_pb2.BatchResponse(responses=[_typed(r) for r in results])


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
