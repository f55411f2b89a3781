from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
REQUIRED_SCOPE_FIELD_NUMBER: _ClassVar[int]
required_scope: _descriptor.FieldDescriptor
IDEMPOTENCY_KEY_REQUIRED_FIELD_NUMBER: _ClassVar[int]
idempotency_key_required: _descriptor.FieldDescriptor
RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
rate_limit: _descriptor.FieldDescriptor
TOKEN_REQUIRED_FIELD_NUMBER: _ClassVar[int]
token_required: _descriptor.FieldDescriptor
SIGNED_HOOK_FIELD_NUMBER: _ClassVar[int]
signed_hook: _descriptor.FieldDescriptor
SHOWN_ONCE_FIELD_NUMBER: _ClassVar[int]
shown_once: _descriptor.FieldDescriptor
