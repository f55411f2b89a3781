"""One sub-request's result as a direct REST call through Envoy would have seen it: the HTTP status,
the response headers and the JSON body, plus the message or google.rpc.Status for gRPC callers.

Headers follow envoy.yaml.tmpl: initial metadata become headers; trailing metadata too (a
trailers-only error's x-request-id and retry-after, filter `grpc_trailer_status`), except `grpc-*`
and the internal `x-http-status`, whose value becomes the status instead. Transport headers that
Envoy adds to every response (date, server, content-length) are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from server.bulk.context import SubRequestContext
from server.bulk.transcode import field_violation, local_reply_json, message_json, status_json
from server.contract.http import HTTP_OF_GRPC, HTTP_STATUS_TRAILER, REQUEST_ID
from server.rpc.errors import ERROR_DOMAIN

JSON = "application/json"


@dataclass
class SubResult:
    id: str
    status: int
    headers: dict[str, str]
    contents: Any
    response: Message | None = None  # success
    error: status_pb2.Status | None = field(default=None)  # failure
    encoded: bytes | None = field(default=None, repr=False)  # rest_json() as compact UTF-8 JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def encode(self) -> bytes:
        """This element of the JSON answer, encoded once (the bytes count against the budget)."""
        if self.encoded is None:
            text = json.dumps(self.rest_json(), separators=(",", ":"), ensure_ascii=False)
            self.encoded = text.encode("utf-8")
        return self.encoded

    def compact(self) -> None:
        """Keep only the encoded element: the decoded contents of a page of exceptions take several
        times its JSON size."""
        self.encode()
        self.contents = None
        self.response = None

    def rest_json(self) -> dict[str, Any]:
        """The element of the REST array (seed 001's keys, plus the id when the request had one)."""
        element: dict[str, Any] = {"id": self.id} if self.id else {}
        element.update(contents=self.contents, headers=self.headers, status=self.status)
        return element


def succeeded(item_id: str, context: SubRequestContext, response: Message, response_body: str) -> SubResult:
    headers = {"content-type": JSON, **_headers(context.initial_metadata or ())}
    for key, value in _headers(context.trailing_metadata).items():
        headers.setdefault(key, value)  # a header sent as initial metadata wins (as in Envoy)
    # A success other than 200 (a dispatch still being delivered: 202), as Envoy's Lua filter sets it.
    wanted = str(dict(context.initial_metadata or ()).get(HTTP_STATUS_TRAILER, ""))
    http = int(wanted) if wanted.isdigit() and 200 <= int(wanted) <= 299 else 200
    return SubResult(item_id, http, headers, message_json(response, response_body), response=response)


def aborted(item_id: str, context: SubRequestContext) -> SubResult:
    trailers = dict(context.trailing_metadata)
    code = context.code or grpc.StatusCode.UNKNOWN
    details = trailers.get("grpc-status-details-bin")
    if isinstance(details, bytes):
        status = status_pb2.Status.FromString(details)
    else:
        status = status_pb2.Status(code=code.value[0], message=context.details or "")
    wanted = str(trailers.get(HTTP_STATUS_TRAILER, ""))
    http = int(wanted) if wanted.isdigit() and 400 <= int(wanted) <= 599 else HTTP_OF_GRPC.get(code, 500)
    headers = {"content-type": JSON, **_headers(context.initial_metadata or ())}
    for key, value in _headers(context.trailing_metadata).items():
        headers.setdefault(key, value)
    return SubResult(item_id, http, headers, status_json(status), error=status)


def not_run(item_id: str, http: int, code: grpc.StatusCode, reason: str, message: str) -> SubResult:
    """The batch's own answer for an item it did not run: 424 (a dependency failed, or the batch
    halted), 504 (time budget spent), 400 (a reference that does not resolve). Server-shaped."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    status = status_pb2.Status(code=code.value[0], message=message, details=[info])
    return SubResult(item_id, http, {"content-type": JSON}, status_json(status), error=status)


def envoy_refused(
    item_id: str,
    http: int,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    request_id: str,
    *,
    allow: str | None = None,
) -> SubResult:
    """What Envoy answers itself when it cannot transcode a call (400 bad value, 404 no route, 405
    with `allow` for a known path and another method)."""
    contents = local_reply_json(code.value[0], reason, message, request_id)
    info, request = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    request.Pack(error_details_pb2.RequestInfo(request_id=request_id))
    details = [info]
    violation = field_violation(message) if code == grpc.StatusCode.INVALID_ARGUMENT else None
    if violation is not None:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=violation[0], description=violation[1])
                ]
            )
        )
        details.append(bad)
    details.append(request)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    headers = {"content-type": JSON, REQUEST_ID: request_id}
    if allow is not None:
        headers["allow"] = allow
    return SubResult(item_id, http, headers, contents, error=status)


def unserved(item_id: str, request_id: str) -> SubResult:
    """grpc's answer for an RPC nobody registered, as Envoy transcodes it (501, no details)."""
    status = status_pb2.Status(code=grpc.StatusCode.UNIMPLEMENTED.value[0], message="Method not found!")
    headers = {"content-type": JSON, REQUEST_ID: request_id}
    return SubResult(item_id, 501, headers, status_json(status), error=status)


def internal(item_id: str, request_id: str) -> SubResult:
    """The error interceptor's INTERNAL, for a failure outside the chain (e.g. the savepoint)."""
    info, request = any_pb2.Any(), any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
    request.Pack(error_details_pb2.RequestInfo(request_id=request_id))
    status = status_pb2.Status(
        code=grpc.StatusCode.INTERNAL.value[0],
        message="internal error; quote the request id when reporting it",
        details=[info, request],
    )
    headers = {"content-type": JSON, REQUEST_ID: request_id}
    return SubResult(item_id, 500, headers, status_json(status), error=status)


def too_large(item_id: str, result: SubResult, size: int, budget: int) -> SubResult:
    """The item's answer would take the batch's answer over BULK_MAX_RESPONSE_BYTES: left out. The
    item ran (a write took effect); its status and request id say how it went."""
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason="RESPONSE_TOO_LARGE",
            domain=ERROR_DOMAIN,
            metadata={"status": str(result.status), "bytes": str(size), "budget": str(budget)},
        )
    )
    message = (
        f"ran with status {result.status}, but its answer ({size} bytes) would take the batch's answer "
        f"over its budget of {budget} bytes; left out (ask for smaller pages or fewer requests)"
    )
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    status = status_pb2.Status(code=code.value[0], message=message, details=[info])
    headers = {"content-type": JSON}
    if REQUEST_ID in result.headers:
        headers[REQUEST_ID] = result.headers[REQUEST_ID]
    return SubResult(item_id, 413, headers, status_json(status), error=status)


def _headers(metadata) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in metadata:
        key = key.lower()
        if key.startswith("grpc-") or key == HTTP_STATUS_TRAILER or key.endswith("-bin"):
            continue
        if isinstance(value, str):
            found.setdefault(key, value)
    return found
