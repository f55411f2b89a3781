"""Protobuf messages as JSON Schemas, the way Envoy's grpc_json_transcoder reads and prints them here
(envoy/envoy.yaml.tmpl: `preserve_proto_field_names`, `always_print_primitive_fields`, enums as
names; envoy/README.md lists what was observed).

Two flavours per message, because the transcoder reads more than it prints:
- output: proto field names only; every field without presence is always printed, so it is
  `required`; proto3 `optional` fields and unset messages (timestamps) are omitted, so they are not;
  64-bit integers print as strings; enums as their names.
- input: the proto name and the lowerCamelCase json name are both accepted for each field (API.md
  §1), 64-bit integers as numbers or strings, enums by name.

Well-known types use their canonical JSON mapping (Timestamp is an RFC 3339 string, Struct an object,
Value any JSON, Any an object with "@type").
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from server.codegen.openapi_constraints import NO_NUL, REQUIRED, constrained, message_constraints
from server.contract.json_rules import (
    FLOAT_TYPES,
    INT32_TYPES,
    INT64_TYPES,
    UINT32_TYPES,
    containing_type,
    enum_type,
    is_map,
    message_type,
)

Schema = dict[str, Any]
Comments = dict[str, str]  # "pkg.Message" / "pkg.Message.field" / "pkg.Enum" -> leading comment

_WRAPPERS: dict[str, Schema] = {
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "google.protobuf.Int64Value": {"type": "string", "pattern": r"^-?[0-9]+$", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "pattern": r"^[0-9]+$"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.DoubleValue": {"type": "number"},
}
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


def is_well_known(message: Descriptor) -> bool:
    return message.full_name in _WELL_KNOWN or message.full_name in _WRAPPERS


def schema_name(message: Descriptor, *, output: bool) -> str:
    """Output schemas are named by the message; input ones too, with 'Input' added (the two differ)."""
    return message.full_name if output else f"{message.full_name}Input"


class SchemaBuilder:
    """Collects the component schemas that the operations reference, in both flavours."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}

    def ref(self, message: Descriptor, *, output: bool, skip: frozenset[str] = frozenset()) -> Schema:
        """A $ref to the message's schema (built once); `skip`: top-level fields bound elsewhere (the
        path), which makes an inline schema instead of a shared one."""
        if is_well_known(message):
            return self._well_known(message, output=output)
        if skip:
            return self._object(message, output=output, skip=skip)
        name = schema_name(message, output=output)
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to themselves
            self.components[name] = self._object(message, output=output)
        return {"$ref": f"#/components/schemas/{name}"}

    def _object(self, message: Descriptor, *, output: bool, skip: frozenset[str] = frozenset()) -> Schema:
        properties: dict[str, Schema] = {}
        required: list[str] = []
        required_input = set(REQUIRED.get(message.full_name, ()))
        for field in message.fields:
            if field.name in skip:
                continue
            field_schema = self.field(field, output=output)
            if not output:
                field_schema = constrained(field_schema, message.full_name, field.name)
            if not output and field.is_repeated and not is_map(field) and "items" in field_schema:
                # The transcoder also reads a single value as a list of one.
                field_schema = _one_or_list(field_schema)
            if not output and field.name not in required_input:
                field_schema = _nullable(field_schema)
            if not output and field.json_name != field.name:
                # One spelling per field, as for query parameters: a body naming a field twice
                # (both spellings) is merged by the transcoder in ways no schema can state.
                also = f"Also accepted as `{field.json_name}`."
                field_schema = {
                    **field_schema,
                    "description": f"{field_schema.get('description', '')}\n\n{also}".strip(),
                }
            properties[field.name] = field_schema
            if output and not field.has_presence:
                required.append(field.name)  # always printed ([] / {} / "" / 0 / the zero enum)
        # Requests: unknown fields are ignored by the transcoder, so the document does not forbid them.
        schema: Schema = {"type": "object", "properties": properties}
        if output:
            schema["additionalProperties"] = False
        else:
            # Other fields are ignored, but a nameless one is refused (Envoy: "Proto fields must
            # have a name.").
            schema["propertyNames"] = {"minLength": 1}
        if required:
            schema["required"] = required
        if not output:
            schema.update(message_constraints(message.full_name))
            exclusive = _exclusive_members(message, skip)
            if exclusive:
                schema.setdefault("allOf", []).extend(exclusive)
        description = self.comments.get(message.full_name)
        if description:
            schema["description"] = description
        return schema

    def field(self, field: FieldDescriptor, *, output: bool) -> Schema:
        if is_map(field):
            value = message_type(field).fields_by_name["value"]
            schema: Schema = {"type": "object", "additionalProperties": self.single(value, output=output)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.single(field, output=output)}
        else:
            schema = self.single(field, output=output)
        description = self.comments.get(f"{containing_type(field).full_name}.{field.name}")
        if description:  # OpenAPI 3.1 allows siblings next to a $ref
            schema = {**schema, "description": description}
        return schema

    def single(self, field: FieldDescriptor, *, output: bool) -> Schema:
        """One value of the field (an element, for repeated ones)."""
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE or kind == FieldDescriptor.TYPE_GROUP:
            return self.ref(message_type(field), output=output)
        if kind == FieldDescriptor.TYPE_ENUM:
            return self.enum(field, output=output)
        return scalar_schema(kind, output=output)

    def enum(self, field: FieldDescriptor, *, output: bool) -> Schema:
        enum = enum_type(field)
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        schema: Schema = {"type": "string", "enum": [v.name for v in enum.values]}
        if not output:
            # The transcoder also reads a value's number (body and query): both are stated.
            schema = {
                "type": ["string", "integer"],
                "enum": [v.name for v in enum.values] + [v.number for v in enum.values],
            }
        description = self.comments.get(enum.full_name)
        if description:
            schema["description"] = description
        return schema

    def _well_known(self, message: Descriptor, *, output: bool) -> Schema:
        if message.full_name in _WRAPPERS:
            inner = dict(_WRAPPERS[message.full_name])
            if not output and inner.get("format") == "int64":
                inner = {"type": ["string", "integer"]}
            return inner
        return dict(_WELL_KNOWN[message.full_name])


def _one_or_list(schema: Schema) -> Schema:
    description = schema.get("description")
    listed = {k: v for k, v in schema.items() if k != "description"}
    one: Schema = {**schema["items"]}
    either: Schema = {"anyOf": [listed, one]}
    return {**either, "description": description} if description else either


def _nullable(schema: Schema) -> Schema:
    """JSON null sets a field to its default (protobuf's JSON mapping): accepted wherever a field
    may be left out."""
    if schema.get("type") == "null" or "$ref" in schema or "type" not in schema:
        if schema.get("type") == "null" or not schema or set(schema) <= {"description"}:
            return schema
        description = schema.get("description")
        inner = {k: v for k, v in schema.items() if k != "description"}
        nullable: Schema = {"anyOf": [inner, {"type": "null"}]}
        return {**nullable, "description": description} if description else nullable
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    merged = {**schema, "type": [*kinds, "null"]}
    if "enum" in merged:
        merged["enum"] = [*merged["enum"], None]
    return merged


def _exclusive_members(message: Descriptor, skip: frozenset[str]) -> list[Schema]:
    """At most one member of a real oneof: the transcoder refuses a body that sets two ("has a value
    that is not valid for its type"). A proto3 `optional` field is a oneof of its own: nothing to say."""
    rules: list[Schema] = []
    for oneof in message.oneofs:
        if len(oneof.fields) < 2:
            continue
        names = [field.name for field in oneof.fields if field.name not in skip]
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                rules.append({"not": {"required": [first, second]}})
    return rules


def scalar_schema(kind: int, *, output: bool) -> Schema:
    if kind == FieldDescriptor.TYPE_STRING:
        return {"type": "string"} if output else {"type": "string", "pattern": NO_NUL}
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind in INT32_TYPES:
        return {"type": "integer", "format": "int32"}
    if kind in UINT32_TYPES:
        return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    if kind in INT64_TYPES:
        # Printed as strings (JSON mapping of 64-bit integers); read from either.
        if output:
            return {"type": "string", "pattern": r"^-?[0-9]+$", "format": "int64"}
        return {"type": ["string", "integer"]}
    if kind in FLOAT_TYPES:
        return {"oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]}
    raise ValueError(f"unsupported field type {kind}")
