"""Domain errors -> google.rpc.Status (gRPC details) with the HTTP status REST callers must see."""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.contract.http import HTTP_OF_GRPC, HTTP_STATUS_TRAILER, REQUEST_ID, RETRY_AFTER
from server.domain.errors import DomainError, ErrorKind

ERROR_DOMAIN = "reconrouter"

_GRPC_CODE: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.CONFLICT: grpc.StatusCode.ABORTED,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.TARGET_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# Where API.md §2 wants another HTTP status than Envoy's table gives the gRPC code (400, 503).
_HTTP_OVERRIDE: dict[ErrorKind, int] = {
    ErrorKind.FAILED_PRECONDITION: 422,
    ErrorKind.TARGET_UNAVAILABLE: 502,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
}


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    return _GRPC_CODE[kind]


def http_status(kind: ErrorKind) -> int:
    return _HTTP_OVERRIDE.get(kind) or HTTP_OF_GRPC[_GRPC_CODE[kind]]


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status_proto(error: DomainError, request_id: str) -> status_pb2.Status:
    code = grpc_code(error.kind).value[0]
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if error.violations:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if error.retry_after_seconds is not None:
        delay = error_details_pb2.RetryInfo()
        delay.retry_delay.seconds = error.retry_after_seconds
        details.append(_pack(delay))
    if request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    assert code != code_pb2.OK
    return status_pb2.Status(code=code, message=error.message, details=details)


def to_grpc_status(error: DomainError, request_id: str) -> grpc.Status:
    """Everything goes into trailers: an error is a trailers-only response, which Envoy transcodes
    into the REST status line, headers and JSON body in one piece."""
    status = to_status_proto(error, request_id)
    trailers = [
        ("grpc-status-details-bin", status.SerializeToString()),
        (HTTP_STATUS_TRAILER, str(http_status(error.kind))),
    ]
    if request_id:
        trailers.append((REQUEST_ID, request_id))
    if error.retry_after_seconds is not None:
        trailers.append((RETRY_AFTER, str(error.retry_after_seconds)))
    return _Status(grpc_code(error.kind), error.message, tuple(trailers))
