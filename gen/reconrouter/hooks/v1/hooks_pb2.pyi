from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReceiveHookRequest(_message.Message):
    __slots__ = ("hook_id", "body")
    HOOK_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    hook_id: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, hook_id: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class HookReceipt(_message.Message):
    __slots__ = ("status", "exception_ids")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    status: str
    exception_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[str] = ..., exception_ids: _Optional[_Iterable[str]] = ...) -> None: ...
