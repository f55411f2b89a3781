"""GET /openapi.json: the OpenAPI document `make gen` wrote (gen/openapi.json), read once at start-up.

Served as google.api.HttpBody through the route table like any other RPC, so it is transcoded by
Envoy, listed in the document itself, and needs no token (no scope, no token_required). The bytes
are the generated file's, untouched: callers get exactly what CI checked to be fresh and valid.
"""

from __future__ import annotations

from pathlib import Path

from google.api import httpbody_pb2
from reconrouter.meta.v1 import meta_pb2_grpc

from server.contract.artifacts import OPENAPI_DOCUMENT


def read_openapi_document(path: Path = OPENAPI_DOCUMENT) -> bytes:
    """The generated document; a missing file is a start-up error (run `make gen`), not a 404 later."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"{path} is missing: run `make gen`") from None


class MetaServicer(meta_pb2_grpc.MetaServiceServicer):
    def __init__(self, openapi_document: bytes) -> None:
        self._body = httpbody_pb2.HttpBody(content_type="application/json", data=openapi_document)

    def GetOpenApiDocument(self, request, context):
        return self._body
