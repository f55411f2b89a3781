"""Request messages no handler should see, refused as 400 INVALID_ARGUMENT before anything runs.

Found by the hardening tests (docs/hardening.md), both reachable by any REST caller:
- Text that is not valid UTF-8. Envoy's transcoder percent-decodes path variables and query
  parameters into string fields byte for byte (`/v1/exceptions/%ff`), so the gRPC message on the
  wire holds invalid UTF-8; protobuf refuses to parse it, and grpc answered that itself, before any
  interceptor, with a bare 500 "Exception deserializing request!". The deserializer is wrapped so
  that the failure reaches this interceptor as a value instead.
- Text containing U+0000. PostgreSQL cannot store it in a text column (psycopg raises DataError, a
  500), SQLite can: refusing it everywhere keeps both databases and every RPC (a /v1/bulk
  sub-request included) the same, and names the field.

It sits inside the error interceptor (which turns the refusal into a google.rpc.Status) and before
auth, like Envoy's own 400s for malformed JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from server.domain.errors import InvalidArgument
from server.rpc.interceptors.base import Behavior, UnaryInterceptor


class UndecodableRequest:
    """Stands in for a request message protobuf could not parse."""


UNDECODABLE = UndecodableRequest()


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return UNDECODABLE

    return deserialize


def _strings(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every string set anywhere in the message, map keys included."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if isinstance(key, str):
                    yield name, key
                # Named by the map alone: keys are the caller's text, not echoed back.
                if value_field.type == FieldDescriptor.TYPE_STRING:
                    yield name, item
                elif value_field.message_type is not None:
                    yield from _strings(item, f"{name}.")
        elif field.is_repeated:
            for index, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_STRING:
                    yield f"{name}[{index}]", item
                elif field.message_type is not None:
                    yield from _strings(item, f"{name}[{index}].")
        elif field.type == FieldDescriptor.TYPE_STRING:
            yield name, value
        elif field.message_type is not None:
            yield from _strings(value, f"{name}.")


def nul_field(message: Message) -> str | None:
    """The path of the first string holding U+0000, or None."""
    return next((name for name, text in _strings(message) if "\x00" in text), None)


class RequestGuardInterceptor(UnaryInterceptor):
    def adapt(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None or handler.unary_unary is None:
            return handler
        # The same unary handler with the tolerant deserializer (UnaryInterceptor adapts unary ones).
        return grpc.unary_unary_rpc_method_handler(
            handler.unary_unary,
            request_deserializer=tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def around(self, method: str, request: Any, context: grpc.ServicerContext, proceed: Behavior) -> Any:
        if isinstance(request, UndecodableRequest):
            raise InvalidArgument("the request holds text that is not valid UTF-8")
        if isinstance(request, Message):
            field = nul_field(request)
            if field is not None:
                raise InvalidArgument.field(field, "must not contain NUL characters")
        return proceed(request, context)
