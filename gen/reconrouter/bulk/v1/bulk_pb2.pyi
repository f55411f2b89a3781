from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.rpc import status_pb2 as _status_pb2
from reconrouter.api.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchRequest(_message.Message):
    __slots__ = ("requests", "halt_on_error")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    HALT_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubRequest]
    halt_on_error: bool
    def __init__(self, requests: _Optional[_Iterable[_Union[SubRequest, _Mapping]]] = ..., halt_on_error: _Optional[bool] = ...) -> None: ...

class SubRequest(_message.Message):
    __slots__ = ("id", "url", "method", "data", "headers")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    method: str
    data: _struct_pb2.Value
    headers: _struct_pb2.Value
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., method: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., headers: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SubResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SubResponse, _Mapping]]] = ...) -> None: ...

class SubResponse(_message.Message):
    __slots__ = ("id", "status", "headers", "contents", "response", "error")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: int
    headers: _containers.ScalarMap[str, str]
    contents: _struct_pb2.Value
    response: _any_pb2.Any
    error: _status_pb2.Status
    def __init__(self, id: _Optional[str] = ..., status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., contents: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., response: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...
