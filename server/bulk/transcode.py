"""What Envoy's grpc_json_transcoder does for a REST call, done in process for /v1/bulk sub-requests:
path variables, query parameters and the JSON body into the request message; the response or the
error status into the JSON a REST caller reads. Behaviour observed on Envoy 1.40 (envoy/README.md):

- Query parameters name fields by proto name or lowerCamelCase json name, dotted for nested
  messages; repeated fields collect every value, other fields keep the last; enums parse from names
  (case-sensitive) or numbers; a parameter without '=' is ignored; '+' stays '+'. An unknown one is
  400 `Could not find field "x" in the type "pkg.Message".`, a bad value
  400 `limit: invalid value "abc" for type TYPE_INT32`.
- Precedence for one field: path variable, then query parameter, then body (last wins).
- Without a body rule (GET), a JSON body still fills the whole message. Unknown body fields are
  dropped silently.
- Output: proto field names, enums as names, fields without presence always printed; errors are
  the google.rpc.Status as {"code", "message", "details"} with "@type" keys.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

from google.api import httpbody_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # noqa: F401 - Any details must resolve

from server.bulk.printer import print_message
from server.contract.json_rules import (
    FLOAT_TYPES,
    INT_RANGES,
    STRING_FORM_MESSAGES,
    Rules,
    body_rules,
    enum_type,
    lenient_json,
)
from server.contract.routes import RouteMatch, unescape

_TYPE_NAMES = {
    value: name
    for name, value in vars(FieldDescriptor).items()
    if name.startswith("TYPE_") and isinstance(value, int)
}


class TranscodeError(ValueError):
    """The request cannot become the RPC's message: the 400 Envoy answers itself."""


# -- request: URL + body -> message ----------------------------------------------------------------


def build_request(match: RouteMatch, query: str, body: Any, *, has_body: bool) -> Message:
    """The request message of a REST call, the way the transcoder builds it."""
    message = match.route.method.request_type()
    for field_path, value in match.bindings:
        _bind(message, field_path, value, ".".join(field_path))
    for name, value in parse_query(query):
        _bind(message, tuple(name.split(".")), value, name)
    if has_body:
        _merge_body(message, match.route.binding.body, body)
    return message


def parse_query(query: str) -> Iterator[tuple[str, str]]:
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            continue  # Envoy ignores `?limit` and `?&x=1`'s empty pair
        yield unescape(name, keep_reserved=False), unescape(value, keep_reserved=False)


def _descriptor(message: Message) -> Descriptor:
    descriptor = message.DESCRIPTOR
    # Never fails: upb's descriptor class counts as descriptor.Descriptor (its metaclass says so);
    # this narrows the stub's union of the two, which share no declared interface.
    assert isinstance(descriptor, Descriptor)
    return descriptor


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor:
    found = descriptor.fields_by_name.get(name) or next(
        (f for f in descriptor.fields if f.json_name == name), None
    )
    if found is None:
        raise TranscodeError(f'Could not find field "{name}" in the type "{descriptor.full_name}".')
    return found


def _bind(message: Message, field_path: tuple[str, ...], raw: str, shown: str) -> None:
    target = message
    for name in field_path[:-1]:
        field = _field(_descriptor(target), name)
        if field.message_type is None or _is_repeated(field):
            raise TranscodeError(f'Could not find field "{field_path[-1]}" in the type "{name}".')
        target = getattr(target, field.name)
    field = _field(_descriptor(target), field_path[-1])
    if field.message_type is not None and field.message_type.full_name in STRING_FORM_MESSAGES:
        holder = getattr(target, field.name)
        try:
            json_format.Parse(json.dumps(raw), holder)
        except json_format.ParseError:
            raise _invalid(shown, raw, f"type.googleapis.com/{field.message_type.full_name}") from None
        return
    if field.message_type is not None:
        raise _invalid(shown, raw, f"type.googleapis.com/{field.message_type.full_name}")
    value = _scalar(field, raw, shown)
    if _is_repeated(field):
        getattr(target, field.name).append(value)
    else:
        setattr(target, field.name, value)


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _invalid(shown: str, raw: str, type_name: str) -> TranscodeError:
    return TranscodeError(f'{shown}: invalid value "{raw}" for type {type_name}')


def _scalar(field: FieldDescriptor, raw: str, shown: str) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return raw
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = enum_type(field)
        if raw in enum.values_by_name:
            return enum.values_by_name[raw].number
        number = _integer(raw)
        # Enum numbers are int32 (protobuf refuses others when the field is set).
        low, high = INT_RANGES[FieldDescriptor.TYPE_INT32]
        if number is not None and low <= number <= high:
            return number
        raise _invalid(shown, raw, f"type.googleapis.com/{enum.full_name}")
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        number = _integer(raw)
        if number is not None and low <= number <= high:
            return number
    elif kind == FieldDescriptor.TYPE_BOOL:
        if raw in ("true", "false"):
            return raw == "true"
    elif kind in FLOAT_TYPES:
        try:
            return float(raw)
        except ValueError:
            pass
    elif kind == FieldDescriptor.TYPE_BYTES:
        return raw.encode()
    raise _invalid(shown, raw, _TYPE_NAMES.get(kind, "TYPE_UNKNOWN"))


def _integer(raw: str) -> int | None:
    """The value of an optionally signed decimal integer; None for anything else."""
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return int(raw)
    except ValueError:
        # More digits than int() converts (sys.get_int_max_str_digits): beyond every range anyway.
        return None


@functools.cache
def _body_rules(descriptor: Descriptor) -> Rules:
    return body_rules([descriptor])


def _merge_body(message: Message, rule: str, body: Any) -> None:
    if rule in ("", "*"):
        if not isinstance(body, dict):
            raise TranscodeError(": Root element must be a message.")
        document = body
    else:
        document = {rule: body}  # body: "field" -> the JSON of that one field
    # What Envoy's Lua filter refuses before its transcoder reads it as nothing (json_rules.py),
    # with the same message; json_format would refuse most of it too, naming the top-level field.
    descriptor = _descriptor(message)
    lenient = lenient_json(document, descriptor, _body_rules(descriptor))
    if lenient is not None:
        raise TranscodeError(lenient)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise TranscodeError(str(exc)) from None


# -- response: message / status -> JSON ------------------------------------------------------------


def message_json(message: Message, response_body: str = "") -> Any:
    """The JSON value Envoy prints for a successful response (a str for a non-JSON HttpBody)."""
    if isinstance(message, httpbody_pb2.HttpBody):
        text = message.data.decode("utf-8", errors="replace")
        if message.content_type.split(";")[0].strip().lower() == "application/json":
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text
    printed = print_message(message)
    return printed.get(response_body) if response_body else printed


def status_json(status: status_pb2.Status) -> dict[str, Any]:
    """convert_grpc_status: {"code", "message", "details"} with every detail's "@type"."""
    return print_message(status)


# The BadRequest Envoy's Lua filter adds to the transcoder's 400s (envoy.yaml.tmpl, violated_field):
# the field its message names, with fixed text (the message keeps the detail).
INVALID_VALUE = "has a value that is not valid for its type"
UNKNOWN_PARAMETER = "is not a parameter of this route"
_VIOLATION_SHAPES = (
    (re.compile(r"^([\w.\[\]]+): invalid value "), INVALID_VALUE),
    (re.compile(r'^Could not find field "([\w.]+)"'), UNKNOWN_PARAMETER),
    (re.compile(r"for field '([\w.\[\]]+)'"), INVALID_VALUE),
    (re.compile(r"on a scalar field for type (\w+)$"), INVALID_VALUE),
    # Python's json_format (sub-requests only): `Failed to parse transaction_id field: ...`.
    (re.compile(r"^Failed to parse ([\w.]+) field"), INVALID_VALUE),
)


def field_violation(message: str) -> tuple[str, str] | None:
    """(field, description) when a transcoding error's message names the field."""
    for pattern, description in _VIOLATION_SHAPES:
        found = pattern.search(message)
        if found:
            return found.group(1), description
    return None


def local_reply_json(code: int, reason: str, message: str, request_id: str = "") -> dict[str, Any]:
    """The body of an error Envoy makes itself (local_reply_config in envoy.yaml.tmpl): keys sorted,
    ErrorInfo, a BadRequest when the message names a field, RequestInfo with the request id."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": "reconrouter",
            "metadata": {},
            "reason": reason,
        }
    ]
    violation = field_violation(message) if code == 3 else None
    if violation is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": violation[0], "description": violation[1], "reason": ""}],
            }
        )
    details.append(
        {"@type": "type.googleapis.com/google.rpc.RequestInfo", "request_id": request_id, "serving_data": ""}
    )
    return {"code": code, "details": details, "message": message}
