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
- Enum numbers the enum does not define. proto3 enums are open: `{"severity": 99}` in a REST body,
  `?status=42` in a /v1/bulk query or severity=99 on the gRPC wire all parse, and the domain's
  conversion by name raised ValueError (a 500). Every enum field of every request is checked here.
- Timestamps protobuf itself calls invalid: seconds outside 0001-01-01..9999-12-31 or nanos outside
  0..999,999,999 (only gRPC callers can send them; Envoy refuses them in JSON). ToDatetime raised.

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


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999


def _scalar_problems(field: FieldDescriptor, value: Any, name: str) -> Iterator[tuple[str, str]]:
    if field.type == FieldDescriptor.TYPE_STRING and "\x00" in value:
        yield name, "must not contain NUL characters"
    elif field.enum_type is not None and value not in field.enum_type.values_by_number:
        yield name, f"unknown {field.enum_type.name} value {value}"


def _message_problems(field: FieldDescriptor, value: Any, name: str) -> Iterator[tuple[str, str]]:
    if field.message_type is None or field.message_type.full_name != "google.protobuf.Timestamp":
        yield from problems(value, f"{name}.")
    elif not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS:
        yield name, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
    elif not 0 <= value.nanos <= MAX_NANOS:
        yield name, f"nanos must be between 0 and {MAX_NANOS}"


def _problems(field: FieldDescriptor, value: Any, name: str) -> Iterator[tuple[str, str]]:
    if field.message_type is not None:
        yield from _message_problems(field, value, name)
    else:
        yield from _scalar_problems(field, value, name)


def problems(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, problem) for every value refused anywhere in the message, map keys included:
    strings holding U+0000, enum numbers the enum does not define, Timestamps out of range."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                # Named by the map alone: keys are the caller's text, not echoed back.
                yield from _scalar_problems(key_field, key, name)
                yield from _problems(value_field, item, name)
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _problems(field, item, f"{name}[{index}]")
        else:
            yield from _problems(field, value, name)


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
            refused = next(problems(request), None)
            if refused is not None:
                raise InvalidArgument.field(*refused)
        return proceed(request, context)
