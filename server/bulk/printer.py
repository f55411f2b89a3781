"""Messages as the JSON Envoy's transcoder prints them (envoy.yaml.tmpl print_options): proto field
names, enums as names, fields without presence always printed, unset optional and message fields
left out, keys in field order (the C++ printer's order), doubles that are integers as integers.

json_format.MessageToDict gives the same values but puts defaulted fields last and prints `1.0`, and
it is most of a sub-request's own cost; walking the descriptor once does both jobs in half the time.
Well-known types (Timestamp, Struct, ...) still go through json_format, which knows their forms.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from server.contract.json_rules import INT64_TYPES, enum_type, is_map, message_type


def print_message(message: Message) -> Any:
    descriptor = message.DESCRIPTOR
    special = _WELL_KNOWN.get(descriptor.full_name)
    if special is not None:
        return special(message)
    if descriptor.full_name.startswith("google.protobuf."):
        return integral_floats(json_format.MessageToDict(message))
    printed: dict[str, Any] = {}
    for name, presence, shape, convert in _plan(descriptor):
        if presence and not message.HasField(name):
            continue  # unset optional, message and oneof fields are not printed
        value = getattr(message, name)
        if shape == _MAP:
            printed[name] = {str(k): convert(v) for k, v in value.items()}
        elif shape == _REPEATED:
            printed[name] = [convert(item) for item in value]
        else:
            printed[name] = convert(value)
    return printed


_SINGLE, _REPEATED, _MAP = range(3)


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[tuple[str, bool, int, Callable[[Any], Any]], ...]:
    """Per message type, once: each field's name, presence, shape and value printer."""
    plan = []
    for field in descriptor.fields:
        if is_map(field):
            plan.append((field.name, False, _MAP, _converter(message_type(field).fields_by_name["value"])))
        else:
            shape = _REPEATED if field.is_repeated else _SINGLE
            plan.append((field.name, field.has_presence and shape == _SINGLE, shape, _converter(field)))
    return tuple(plan)


def _converter(field: FieldDescriptor) -> Callable[[Any], Any]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        return print_message
    if kind == FieldDescriptor.TYPE_ENUM:
        names = {v.number: v.name for v in enum_type(field).values}
        return lambda value: names.get(value, value)
    if kind in INT64_TYPES:
        return str
    if kind == FieldDescriptor.TYPE_FLOAT:
        return lambda value: _float(type_checkers.ToShortestFloat(value))
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _float
    if kind == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode("ascii")
    return _same


def _same(value: Any) -> Any:
    return value


def _float(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return integral_floats(value)


def _print_any(message: any_pb2.Any) -> Any:
    if not message.type_url:
        return {}
    name = message.type_url.rsplit("/", 1)[-1]
    try:
        descriptor: Descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return json_format.MessageToDict(message)
    inner = message_factory.GetMessageClass(descriptor)()
    message.Unpack(inner)
    printed = print_message(inner)
    if name.startswith("google.protobuf."):
        return {"@type": message.type_url, "value": printed}
    return {"@type": message.type_url, **printed}


# The well-known types met most often, printed without json_format's generic machinery.
_WELL_KNOWN: dict[str, Callable[[Any], Any]] = {
    "google.protobuf.Any": _print_any,
    "google.protobuf.Timestamp": lambda message: message.ToJsonString(),
    "google.protobuf.Duration": lambda message: message.ToJsonString(),
}


def integral_floats(value: Any) -> Any:
    """Doubles print as `1` in Envoy (C++) but `1.0` in Python: the same number, the same text."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: integral_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_floats(v) for v in value]
    return value
