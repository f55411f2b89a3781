"""What the REST side of the contract looks like on the wire, said once: the header names the
service reads and writes, and the HTTP status a REST caller sees for each gRPC status.

Envoy's transcoder maps gRPC statuses to HTTP by a fixed table (grpcToHttpStatus); the service
states the two statuses that table lacks (422, 502) in an error trailer that Envoy's Lua filter
turns into `:status` (envoy/README.md). /v1/bulk, which answers sub-requests as Envoy would, reads
the same table.
"""

from __future__ import annotations

import grpc

# Request and response headers (gRPC metadata keys are lower case).
AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"
IDEMPOTENCY_KEY = "x-idempotency-key"
# Read when IDEMPOTENCY_KEY is absent (API.md §5).
IDEMPOTENCY_KEY_ALTERNATIVE = "idempotency-key"
IDEMPOTENCY_REPLAYED = "x-idempotency-replayed"
RETRY_AFTER = "retry-after"
# The HTTP status an error asks for, where Envoy's table has none (422, 502); never reaches a caller.
HTTP_STATUS_TRAILER = "x-http-status"

# Envoy's grpcToHttpStatus (source/common/grpc/status.cc), for errors without HTTP_STATUS_TRAILER.
HTTP_OF_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
