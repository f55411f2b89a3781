"""The protobuf JSON mapping as Envoy's transcoder applies it, said once for the three places that
need it: the OpenAPI schemas (server/codegen/), and the /v1/bulk transcoder and printer
(server/bulk/), which do in process what Envoy does for a direct REST call.
"""

from __future__ import annotations

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
