"""The protobuf JSON mapping as Envoy's transcoder applies it, said once for the three places that
need it: the OpenAPI schemas (server/codegen/), and the /v1/bulk transcoder and printer
(server/bulk/), which do in process what Envoy does for a direct REST call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

# Integer field types and the values each holds (out of range is a 400, as Envoy answers).
INT_RANGES: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
INT32_TYPES = frozenset(
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
)
UINT32_TYPES = frozenset({FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32})
# 64-bit integers print as JSON strings and are read from numbers or strings.
INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})

# Well-known messages whose JSON form is a string, so a query parameter can carry them.
STRING_FORM_MESSAGES = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
        "google.protobuf.Int32Value",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.FloatValue",
        "google.protobuf.DoubleValue",
        "google.protobuf.BoolValue",
    }
)


def is_map(field: FieldDescriptor) -> bool:
    """A map field (a repeated message of the generated *Entry type): a JSON object."""
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def message_type(field: FieldDescriptor) -> Descriptor:
    """The type of a message (group, map) field; the descriptor's attribute is None for others."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The type of an enum field; the descriptor's attribute is None for others."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def containing_type(field: FieldDescriptor) -> Descriptor:
    """The message a field belongs to (every field of a message has one; the stub says optional)."""
    if field.containing_type is None:
        raise TypeError(f"{field.full_name} belongs to no message")
    return field.containing_type


# -- JSON the transcoder would read as nothing ---------------------------------------------------
# Envoy's transcoder (1.40) drops a null list item and flattens a list inside a list
# (`[null]` and `[[]]` are `[]`, `[["a"]]` is `["a"]`), reads a null map value as "" and reads an
# object for a message whose JSON is a scalar (`{}` for a Timestamp) as that message's fields (`{}` is
# 1970-01-01T00:00:00Z). None of it is JSON the document allows, and the server cannot tell it from
# what it stands for, so it is refused before it is transcoded: by the Lua filter in
# envoy/envoy.yaml.tmpl (rest_body_check) for REST calls, and by server/bulk/transcode.py for
# /v1/bulk sub-requests, with the same message. Both read these rules.

# Values where any JSON goes (null, lists in lists): nothing is checked inside them.
FREE_FORM_MESSAGES = frozenset(
    {"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Any"}
)


@dataclass(frozen=True)
class BodyRule:
    """What one field's JSON value may not be.

    kind: "message" (descend into `type_name`), "scalar" (a well-known message whose JSON is a
    string, number or boolean: not an object), "list" (repeated: no null item, no list item) or "map"
    (no null value). For a list or a map, item_kind says what each item is ("message", "scalar" or ""
    for a plain scalar) and type_name is the item's message type."""

    name: str  # the proto field name (errors name fields by it, as Envoy's transcoder does)
    kind: str
    item_kind: str
    type_name: str


# Message type -> JSON key (proto and json name) -> rule.
Rules = dict[str, dict[str, BodyRule]]


def _item(descriptor: Descriptor | None) -> tuple[str, str]:
    if descriptor is None:
        return "", ""
    if descriptor.full_name in STRING_FORM_MESSAGES:
        return "scalar", descriptor.full_name
    return "message", descriptor.full_name


def body_rules(roots: Iterable[Descriptor]) -> Rules:
    """The rules of the message types reachable from roots that have something to check; a type with
    nothing to check is left out."""
    found: Rules = {}
    pending = list(roots)
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in found:
            continue
        keyed: dict[str, BodyRule] = {}
        for field in descriptor.fields:
            rule, nested = _rule(field)
            if rule is None:
                continue
            if nested is not None:
                pending.append(nested)
            keyed[field.name] = keyed[field.json_name] = rule
        found[descriptor.full_name] = keyed
    # A type has something to check when a field of it does, or a message field's type has.
    checked: set[str] = set()
    grew = True
    while grew:
        grew = False
        for name, keyed in found.items():
            if name in checked:
                continue
            if any(r.kind != "message" or r.type_name in checked for r in keyed.values()):
                checked.add(name)
                grew = True
    rules: Rules = {}
    for name in sorted(checked):
        rules[name] = {}
        for key, rule in found[name].items():
            if rule.kind == "message" and rule.type_name not in checked:
                continue
            if rule.item_kind == "message" and rule.type_name not in checked:
                rule = BodyRule(rule.name, rule.kind, "", "")
            rules[name][key] = rule
    return rules


def _rule(field: FieldDescriptor) -> tuple[BodyRule | None, Descriptor | None]:
    """A field's rule, and the message type to read next (None: none)."""
    target = field.message_type
    if is_map(field):
        value = message_type(field).fields_by_name["value"].message_type
        if value is not None and value.full_name in FREE_FORM_MESSAGES:
            return None, None
        kind, type_name = _item(value)
        return BodyRule(field.name, "map", kind, type_name), value if kind == "message" else None
    if target is not None and target.full_name in FREE_FORM_MESSAGES:
        return None, None
    if field.is_repeated:
        kind, type_name = _item(target)
        return BodyRule(field.name, "list", kind, type_name), target if kind == "message" else None
    if target is None:
        return None, None
    if target.full_name in STRING_FORM_MESSAGES:
        return BodyRule(field.name, "scalar", "", target.full_name), None
    return BodyRule(field.name, "message", "", target.full_name), target


def null_item(path: str) -> str:
    return f"{path}: invalid value null: a list item cannot be null"


def list_item(path: str) -> str:
    return f"{path}: invalid value [...]: a list item cannot be a list"


def null_map_value(path: str) -> str:
    return f"{path}: invalid value null: a map value cannot be null"


def object_for_scalar(path: str, type_name: str) -> str:
    return f"{path}: invalid value {{...}}: a {type_name} is not a JSON object"


def lenient_json(value: Any, descriptor: Descriptor, rules: Rules) -> str | None:
    """The first piece of a request body the transcoder would read as nothing (the 400's message),
    or None. `value` is the parsed JSON of a message of type `descriptor`."""
    return _object(value, rules.get(descriptor.full_name), "", rules)


def _object(value: Any, keyed: dict[str, BodyRule] | None, path: str, rules: Rules) -> str | None:
    if not isinstance(value, dict) or not keyed:
        return None
    for key, item in value.items():
        rule = keyed.get(key)
        if rule is None:
            continue
        here = f"{path}.{rule.name}" if path else rule.name
        if rule.kind == "list":
            # A single object stands for a list of one (the transcoder reads it so).
            items = item if isinstance(item, list) else [item] if isinstance(item, dict) else []
            for index, element in enumerate(items):
                where = f"{here}[{index}]"
                if element is None:
                    return null_item(where)
                if isinstance(element, list):
                    return list_item(where)
                found = _value(element, rule.item_kind, rule.type_name, where, rules)
                if found:
                    return found
        elif rule.kind == "map":
            for name, element in item.items() if isinstance(item, dict) else ():
                if element is None:
                    return null_map_value(here)
                found = _value(element, rule.item_kind, rule.type_name, f"{here}.{name}", rules)
                if found:
                    return found
        else:
            found = _value(item, rule.kind, rule.type_name, here, rules)
            if found:
                return found
    return None


def _value(value: Any, kind: str, type_name: str, path: str, rules: Rules) -> str | None:
    if kind == "scalar" and isinstance(value, dict):
        return object_for_scalar(path, type_name)
    if kind == "message":
        return _object(value, rules.get(type_name), path, rules)
    return None
